"The run folder's files and shipped.json's format: what the notebook cannot show well (old files, imports)."
import json, subprocess, sys
from pathlib import Path
import pytest
from reranker_tune.run_folder import (RunFolder, ShippedRule, ModelFolderError, NORMALISATION,
                                      RETRIEVER_SCORES, CROSS_ENCODER_SCORES, run_folders)
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

def test_serving_keeps_its_names_and_no_longer_imports_the_pipeline():
    from reranker_tune import serving, run_folder
    assert serving.ModelFolderError is run_folder.ModelFolderError
    assert serving.SHIPPED_FILE == run_folder.SHIPPED_FILE == "shipped.json"
    code = ("import sys, reranker_tune.serving; "
            "print('reranker_tune.pipeline' in sys.modules, 'reranker_tune.batch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]

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
