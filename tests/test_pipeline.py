"The main job end to end: the real MiniLM on a slice of the sample, and the tiny models through papermill."
import json, subprocess, sys
from pathlib import Path
import pytest, yaml
from sentence_transformers import CrossEncoder
from reranker_tune.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parents[1]

def test_main_job_with_minilm_on_a_slice(tmp_path):
    result = run_pipeline(run_dir=tmp_path/"slice", max_queries=60, epochs=1, top_k=10, batch_size=16)
    folder = Path(result["run_dir"])
    assert {"config.yaml", "metrics.json", "comparison.csv", "comparison.md", "model"} <= {p.name for p in folder.iterdir()}
    metrics = json.loads((folder/"metrics.json").read_text())
    assert set(metrics) >= {"retriever", "fine-tuned", "fine-tuned + retriever", "verdict", "seconds", "fusion"}
    for row in ("retriever", "fine-tuned", "fine-tuned + retriever"):
        assert 0 <= metrics[row]["ndcg@10"] <= 1 and metrics[row]["queries"] == 12
    assert 0 <= metrics["fusion"]["weight"] <= 1 and len(metrics["fusion"]["dev_ndcg@10_by_weight"]) == 11
    config = yaml.safe_load((folder/"config.yaml").read_text())
    assert config["max_queries"] == 60 and config["device"] == "cpu" and config["precision"] == "fp32"
    assert not (folder/"model.partial").exists()
    reloaded = CrossEncoder(str(folder/"model"))
    scores = reloaded.predict([("how do I water a cactus", "Water a cactus deeply but rarely."), ("how do I water a cactus", "Prune roses in spring.")])
    assert scores.shape == (2,)

def test_pipeline_notebook_runs_under_papermill(tmp_path, tiny_bert, tiny_embedder):
    "The notebook itself, headless, as users run it: parameters injected, results beside the executed notebook."
    out = tmp_path/"run"/"pipeline.ipynb"
    (tmp_path/"run").mkdir()
    cmd = [sys.executable, "-m", "papermill", str(ROOT/"nbs"/"06_pipeline.ipynb"), str(out), "-k", "python3",
           "-p", "run_dir", str(tmp_path/"run"), "-p", "embedder", tiny_embedder, "-p", "base_model", tiny_bert,
           "-p", "max_queries", "40", "-p", "epochs", "1", "-p", "top_k", "10", "--cwd", str(ROOT/"nbs")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path/"run"/"metrics.json").read_text())
    assert metrics["retriever"]["queries"] == 8
    assert "injected-parameters" in out.read_text()

def test_without_a_dev_split_the_cross_encoder_is_shipped_alone(tmp_path, tiny_bert, tiny_embedder):
    result = run_pipeline(run_dir=tmp_path/"nodev", max_queries=30, dev_size=0, epochs=1, top_k=5,
                          embedder=tiny_embedder, base_model=tiny_bert)
    assert list(result["table"].index) == ["retriever", "fine-tuned"] and result["fusion_weight"] is None
    assert result["verdict"].startswith("The fine-tuned reranker ") and "fused" not in result["verdict"]

def test_a_dataframe_source_is_recorded_by_type_in_the_config(tmp_path, tiny_bert, tiny_embedder):
    import pandas as pd
    from reranker_tune.data import sample_pairs
    df = sample_pairs().to_pandas().head(40).rename(columns={"query": "question"})
    result = run_pipeline(source=df, column_mapping={"question": "query"}, run_dir=tmp_path/"df", epochs=1, top_k=5,
                          embedder=tiny_embedder, base_model=tiny_bert)
    config = yaml.safe_load((Path(result["run_dir"])/"config.yaml").read_text())
    assert config["source"] == "<DataFrame>" and config["column_mapping"] == {"question": "query"}

def _candidate_lists(pairs, n_queries: int, offset: int):
    "Candidate lists built from the sample: each question's answer plus four other answers as negatives."
    import pandas as pd
    df = pairs.to_pandas().drop_duplicates("query").reset_index(drop=True)
    rows = []
    for i in range(offset, offset + n_queries):
        others = [df.answer[(i + k*7) % len(df)] for k in range(1, 5)]
        rows.append({"query": df["query"][i], "positive": [df.answer[i]], "negative": others})
    return pd.DataFrame(rows)

def test_candidate_lists_with_their_own_test_and_dev_files(tmp_path, tiny_bert, tiny_embedder):
    "TrecQA's shape: given negatives are trained on, given test and dev lists are reranked as they are."
    from reranker_tune.data import sample_pairs
    pairs = sample_pairs()
    for name, n, offset in (("train", 40, 0), ("dev", 10, 100), ("test", 12, 200)):
        _candidate_lists(pairs, n, offset).to_json(tmp_path/f"{name}.jsonl", orient="records", lines=True)
    result = run_pipeline(source=tmp_path/"train.jsonl", test_source=tmp_path/"test.jsonl", dev_source=tmp_path/"dev.jsonl",
                          run_dir=tmp_path/"lists", embedder=tiny_embedder, base_model=tiny_bert, max_negatives=2, epochs=1)
    metrics = json.loads((Path(result["run_dir"])/"metrics.json").read_text())
    assert metrics["retriever"]["queries"] == 12 and metrics["training"]["rows"] == 40*3 # 1 positive + 2 of 4 negatives each
    assert len(metrics["fusion"]["dev_ndcg@10_by_weight"]) == 11 and result["verdict"].startswith("On dev")
    config = yaml.safe_load((Path(result["run_dir"])/"config.yaml").read_text())
    assert config["shape"] == "candidate_lists" and not (Path(result["run_dir"])/"checkpoints").exists()

def test_a_listwise_loss_trains_on_mined_lists_and_epochs_come_from_the_data(tmp_path, tiny_bert, tiny_embedder):
    result = run_pipeline(run_dir=tmp_path/"lambda", max_queries=30, loss="LambdaLoss", top_k=5, batch_size=8,
                          embedder=tiny_embedder, base_model=tiny_bert, patience=1)
    metrics = json.loads((Path(result["run_dir"])/"metrics.json").read_text())
    assert metrics["training"]["loss"] == "LambdaLoss" and metrics["training"]["rows"] == 19 # one list per training query
    assert metrics["training"]["epochs"] == 6 # 19 lists, 3 steps an epoch: the cap
    assert result["model"].activation_fn.__class__.__name__ == "Identity" # listwise losses read raw logits
