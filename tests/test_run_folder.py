"The run folder's files and shipped.json's format: what the notebook cannot show well (old files, imports)."
import json
from pathlib import Path
import pytest
from reranker_tune.run_folder import (RunFolder, ShippedRule, ModelFolderError, NORMALISATION,
                                      RETRIEVER_SCORES, CROSS_ENCODER_SCORES, run_folders, Judgement,
                                      ResolvedSettings)
from reranker_tune.evaluation import RETRIEVER, CROSS_ENCODER, FUSION

# shipped.json as pipeline.shipped_rule wrote it before the rule had a record of its own
OLD_RULE = {"format": 1, "shipped": FUSION, "fusion_weight": 0.5, "normalisation": NORMALISATION,
            "cross_encoder": {"folder": "model", "scores": CROSS_ENCODER_SCORES, "precision": "fp32"},
            "retriever": {"model": "all-MiniLM-L6-v2", "scores": RETRIEVER_SCORES},
            "top_k": 30, "dev_ndcg@10_by_weight": {"0": 0.7, "0.5": 0.74, "1": 0.71},
            "reason": "the fusion won on dev"}

@pytest.fixture
def run(tmp_path) -> Path:
    (tmp_path/"run"/"model").mkdir(parents=True)
    return tmp_path/"run"

def test_a_rule_is_written_byte_for_byte_as_before(run):
    rule = ShippedRule(FUSION, 0.5, dict(OLD_RULE["cross_encoder"]), dict(OLD_RULE["retriever"]),
                       top_k=30, dev_ndcg_by_weight=dict(OLD_RULE["dev_ndcg@10_by_weight"]),
                       reason="the fusion won on dev")
    assert rule.write(run).read_text() == json.dumps(OLD_RULE, indent=2) + "\n"
    assert ShippedRule.read(run) == rule

def test_a_rule_without_format_reads_as_version_1(run):
    (run/"shipped.json").write_text(json.dumps({k: v for k, v in OLD_RULE.items() if k != "format"}))
    rule = ShippedRule.read(run)
    assert (rule.format_version, rule.shipped, rule.fusion_weight, rule.top_k) == (1, FUSION, 0.5, 30)

def test_an_older_minimal_rule_still_reads(run):
    "Only the keys a hand-made or early run had: the cross-encoder's folder defaults to model/."
    (run/"shipped.json").write_text(json.dumps({"shipped": CROSS_ENCODER, "fusion_weight": None}))
    rule = ShippedRule.read(run)
    assert (rule.fusion_weight, rule.cross_encoder["folder"], rule.format_version) == (1.0, "model", 1)

def test_a_newer_format_is_refused_naming_the_file(run):
    (run/"shipped.json").write_text(json.dumps({**OLD_RULE, "format": 2}))
    with pytest.raises(ModelFolderError, match=r"run/shipped\.json: format 2; this reranker_tune reads format 1"):
        ShippedRule.read(run)

def test_serving_keeps_its_names():
    "Readers that import the names from serving, as before run_folder was their home, get the same objects."
    from reranker_tune import serving, run_folder
    assert serving.ModelFolderError is run_folder.ModelFolderError
    assert serving.SHIPPED_FILE == run_folder.SHIPPED_FILE == "shipped.json"

def test_load_shipped_rule_is_the_record_as_a_dict(run):
    from reranker_tune.serving import load_shipped_rule
    (run/"shipped.json").write_text(json.dumps(OLD_RULE))
    assert load_shipped_rule(run) == OLD_RULE

def test_the_listing_skips_unfinished_and_failed_runs(tmp_path):
    for name in ("b", "a", "a.failed", ".c.running", ".d.partial-1-x", "e"):
        (tmp_path/name).mkdir()
        if name != "e": RunFolder(tmp_path/name).write_metrics({"shipped": RETRIEVER})
    assert [p.name for p in run_folders(tmp_path)] == ["a", "b"]
    assert RunFolder(tmp_path/"a").read_metrics() == {"shipped": RETRIEVER}

# metrics.json as pipeline.write_run wrote it before the judgement had a record of its own
OLD_METRICS = {"verdict": "On dev, the fusion wins.\nThe fusion beats the retriever.", "shipped": FUSION,
               "dev": {"queries": 5, "ndcg@10": {RETRIEVER: 0.6, CROSS_ENCODER: 0.7, FUSION: 0.72},
                       "chosen_weight": 0.5, "cross_fitted_vs_retriever": {"difference": 0.1, "low": 0.02}},
               "seconds": {"data": 0.1, "training": 2.0, "evaluation": 0.4, "total": 2.5},
               "training": {"rows": 19, "pairs": 152, "epochs": 1.0, "loss": "ListNetLoss", "batch_size": 4,
                            "device": "cpu", "precision": "bf16"},
               "shipped_vs_retriever": {"difference": 0.05, "low": 0.01, "high": 0.09, "p_value": 0.03},
               "fusion": {"weight": 0.5, "dev_ndcg@10_by_weight": {"0": 0.6, "0.5": 0.72, "1": 0.7}},
               RETRIEVER: {"queries": 6, "parameters": 19200, "ndcg@10": 0.5},
               CROSS_ENCODER: {"queries": 6, "parameters": 45697, "ndcg@10": 0.55},
               FUSION: {"queries": 6, "parameters": 64897, "ndcg@10": 0.58}}

def test_a_judgement_written_then_read_is_equal(tmp_path):
    judgement = Judgement(FUSION, OLD_METRICS["verdict"], {k: OLD_METRICS[k] for k in (RETRIEVER, CROSS_ENCODER, FUSION)},
                          OLD_METRICS["dev"], OLD_METRICS["shipped_vs_retriever"], 0.5,
                          OLD_METRICS["fusion"]["dev_ndcg@10_by_weight"], OLD_METRICS["training"], OLD_METRICS["seconds"])
    path = judgement.write(tmp_path)
    assert Judgement.read(tmp_path) == judgement
    assert json.loads(path.read_text()) == {"format": 1, **OLD_METRICS}, "the keys runs have always written, and format"
    assert list(json.loads(path.read_text())) == ["format", *OLD_METRICS], "in their order"

def test_a_metrics_file_without_format_reads_as_version_1(tmp_path):
    RunFolder(tmp_path).write_metrics(OLD_METRICS)
    judgement = Judgement.read(tmp_path)
    assert (judgement.format_version, judgement.shipped, judgement.fusion_weight) == (1, FUSION, 0.5)
    assert judgement.held_out[RETRIEVER]["ndcg@10"] == 0.5 and judgement.dev["queries"] == 5
    assert judgement.to_dict() == {"format": 1, **OLD_METRICS}

def test_a_newer_metrics_format_is_refused_naming_the_file(tmp_path):
    RunFolder(tmp_path/"run").path.mkdir()
    RunFolder(tmp_path/"run").write_metrics({**OLD_METRICS, "format": 2})
    message = r"run/metrics\.json: format 2; this reranker_tune reads format 1"
    with pytest.raises(ValueError, match=message): Judgement.read(tmp_path/"run")
    with pytest.raises(ValueError, match=message): RunFolder(tmp_path/"run").read_metrics() # every reader

def test_resolved_settings_read_back_and_refuse_a_newer_format(tmp_path):
    settings = ResolvedSettings("cpu", "bf16", "fp32", "pairs", 4, None, "all-MiniLM-L6-v2", "x/all-MiniLM-L6-v2",
                                versions={"python": "3.11.7"})
    RunFolder(tmp_path).write_config({"seed": 12, "resolved": settings.to_dict()})
    assert ResolvedSettings.read(tmp_path) == settings
    RunFolder(tmp_path).write_config({"seed": 12, "resolved": {**settings.to_dict(), "format": 2}})
    with pytest.raises(ValueError, match=r"config\.yaml: resolved: format 2"): ResolvedSettings.read(tmp_path)

def test_the_pipeline_writes_both_records_with_their_format(tmp_path, tiny_bert, tiny_embedder):
    from reranker_tune.data import sample_pairs
    from reranker_tune.pipeline import run_pipeline
    source = sample_pairs().to_pandas().iloc[:30].reset_index(drop=True)
    run_pipeline(source=source, run_dir=tmp_path/"run", epochs=1, top_k=30, embedder=tiny_embedder,
                 base_model=tiny_bert)
    metrics = json.loads((tmp_path/"run"/"metrics.json").read_text())
    assert metrics["format"] == 1 and list(metrics)[:3] == ["format", "verdict", "shipped"]
    judgement = Judgement.read(tmp_path/"run")
    assert judgement.shipped in judgement.held_out and judgement.verdict == metrics["verdict"]
    resolved = ResolvedSettings.read(tmp_path/"run")
    assert (resolved.format_version, resolved.device, resolved.shape) == (1, "cpu", "pairs")
