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
