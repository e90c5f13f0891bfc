"Batch runs through papermill with the tiny models: a sweep with a run that fails on purpose, re-runs, --force, the leaderboard."
import configparser, json, os, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest, yaml
from reranker_tune import batch
from reranker_tune.batch import main, expand_sweep, load_sweep, offline_aware_environment

ROOT = Path(__file__).resolve().parents[1]

def _write_sweep(path: Path, runs_dir: Path, runs: list[dict], tiny_bert: str, tiny_embedder: str) -> Path:
    base = {"embedder": tiny_embedder, "base_model": tiny_bert, "max_queries": 20, "epochs": 1, "top_k": 5, "dev_size": 0}
    path.write_text(yaml.safe_dump({"runs_dir": str(runs_dir), "base": base, "runs": runs}))
    return path

def _mtimes(runs_dir: Path, names) -> dict:
    return {n: (runs_dir/n/"metrics.json").stat().st_mtime_ns for n in names}

def test_sweep_keeps_going_past_a_failure_skips_finished_runs_and_forces(tmp_path, tiny_bert, tiny_embedder, capsys):
    runs_dir = tmp_path/"runs"
    runs = [{"name": "good-a", "learning_rate": "1e-4"}, {"name": "good-b", "num_negatives": 1},
            {"name": "broken", "source": str(tmp_path/"missing.jsonl")}]
    sweep = _write_sweep(tmp_path/"sweep.yaml", runs_dir, runs, tiny_bert, tiny_embedder)

    assert main(["sweep", str(sweep)]) == 1
    err = capsys.readouterr().err
    assert "Failed runs: broken " in err and "good-a" not in err
    for name in ("good-a", "good-b"):
        folder = runs_dir/name
        assert {"pipeline.ipynb", "metrics.json", "comparison.csv", "config.yaml", "batch.json", "model"} <= {p.name for p in folder.iterdir()}
        assert "injected-parameters" in (folder/"pipeline.ipynb").read_text()
        record = json.loads((folder/"batch.json").read_text())
        assert record["status"] == "finished" and record["device"] == "cpu" and record["hub_offline"] is True
        assert record["notebook"].endswith("nbs/06_pipeline.ipynb")
        assert yaml.safe_load((folder/"config.yaml").read_text())["run_dir"] == str(folder.resolve())
    assert yaml.safe_load((runs_dir/"good-a"/"config.yaml").read_text())["learning_rate"] == 1e-4 # "1e-4" read as a number
    broken = runs_dir/"broken"
    assert not (broken/"metrics.json").exists() and json.loads((broken/"batch.json").read_text())["status"] == "failed"
    assert "missing.jsonl: no such file or folder" in (broken/"error.txt").read_text()
    partial = json.loads((broken/"pipeline.ipynb").read_text())
    assert any(o.get("output_type") == "error" for c in partial["cells"] if c["cell_type"] == "code" for o in c["outputs"])

    # again: the finished runs are skipped (same metrics.json), the failed one is tried again
    before = _mtimes(runs_dir, ["good-a", "good-b"])
    assert main(["sweep", str(sweep)]) == 1
    out = capsys.readouterr().out
    assert "skip good-a" in out and "skip good-b" in out and "run broken" in out and "broken: not finished" in out
    assert _mtimes(runs_dir, ["good-a", "good-b"]) == before

    # --force re-executes a finished run (a sweep file that lists only good-a, same runs_dir)
    only_a = _write_sweep(tmp_path/"only_a.yaml", runs_dir, runs[:1], tiny_bert, tiny_embedder)
    assert main(["sweep", str(only_a), "--force"]) == 0
    assert "good-a: --force" in capsys.readouterr().out
    assert _mtimes(runs_dir, ["good-a"])["good-a"] != before["good-a"]

    # the leaderboard: finished runs only, best first, with the parameters that vary
    assert main(["leaderboard", str(runs_dir)]) == 0
    table = pd.read_csv(runs_dir/"leaderboard.csv")
    assert sorted(table["run"]) == ["good-a", "good-b"]
    assert list(table["ndcg@10"]) == sorted(table["ndcg@10"], reverse=True)
    assert {"shipped", "retriever ndcg@10", "gain", "gain low", "gain high", "learning_rate", "num_negatives"} <= set(table.columns)
    assert (table["gain low"] <= table["gain"]).all() and (table["gain"] <= table["gain high"]).all()
    assert table.loc[0, "run"] in (runs_dir/"leaderboard.md").read_text().splitlines()[2]
    assert (runs_dir/"leaderboard.png").read_bytes()[:4] == b"\x89PNG"

    # the same command as a script: python -m reranker_tune.batch (what the console script runs)
    done = subprocess.run([sys.executable, "-m", "reranker_tune.batch", "leaderboard", str(runs_dir), "--metric", "mrr@10",
                           "--out", str(tmp_path/"by-mrr")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    by_mrr = pd.read_csv(tmp_path/"by-mrr"/"leaderboard.csv")
    assert list(by_mrr["mrr@10"]) == sorted(by_mrr["mrr@10"], reverse=True) and by_mrr["gain low"].isna().all()

def test_without_a_checkout_a_generated_notebook_runs(tmp_path, tiny_bert, tiny_embedder, monkeypatch):
    "Installed users have no nbs/: the run executes a notebook made from run_pipeline's signature (which also takes `device`)."
    monkeypatch.setattr(batch, "_checkout_notebook", lambda: None)
    params = {"embedder": tiny_embedder, "base_model": tiny_bert, "max_queries": 20, "epochs": 1, "top_k": 5, "dev_size": 0, "device": "cpu"}
    assert batch.run_sweep({"installed": params}, tmp_path) == {"installed": "finished"}
    record = json.loads((tmp_path/"installed"/"batch.json").read_text())
    assert record["notebook"] == "generated (run_pipeline)" and (tmp_path/"installed"/"metrics.json").is_file()
    assert "run_pipeline(source=source" in (tmp_path/"installed"/"pipeline.ipynb").read_text()

def test_the_pipeline_notebook_refuses_a_parameter_it_lacks(tmp_path, capsys):
    "06_pipeline's parameters cell has no `device`: caught before any run starts, exit status 2."
    assert main(["run", "--param", "device=cuda", "--runs-dir", str(tmp_path)]) == 2
    assert "has no parameter for {'device-cuda': ['device']}" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())

def test_bad_input_names_the_file_and_the_parameter(tmp_path, capsys):
    sweep = tmp_path/"typo.yaml"
    sweep.write_text("grid:\n  learning_rat: [1.0e-5, 2.0e-5]\n")
    assert main(["sweep", str(sweep)]) == 2
    assert f"{sweep}: unknown parameter(s) ['learning_rat']" in capsys.readouterr().err
    assert main(["run", "--param", "epochs"]) == 2
    assert "expected name=value" in capsys.readouterr().err

def test_example_sweep_expands_to_four_named_runs():
    configs, runs_dir = load_sweep(ROOT/"sweeps"/"example.yaml")
    assert runs_dir == "runs/example"
    assert list(configs) == ["learning_rate-2e-05_num_negatives-1", "learning_rate-2e-05_num_negatives-3",
                             "learning_rate-5e-05_num_negatives-1", "learning_rate-5e-05_num_negatives-3"]
    assert all(c["max_queries"] == 60 and isinstance(c["learning_rate"], float) for c in configs.values())
    assert list(configs) == list(load_sweep(ROOT/"sweeps"/"example.yaml")[0]) # stable names

def test_names_are_filesystem_safe_and_unique():
    configs = expand_sweep({"runs": [{"source": "x/a b/train.jsonl"}, {"source": "y/a b/train.jsonl"}, {"source": "z/c:d/train.jsonl"}]})
    assert len(configs) == 3 and all(set(n) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") for n in configs)

def test_unreachable_hub_switches_the_runs_offline(monkeypatch):
    import huggingface_hub.constants
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"): monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9") # nothing listens on the discard port
    assert offline_aware_environment() is True and os.environ["HF_HUB_OFFLINE"] == "1"

def test_console_script_points_at_the_batch_command():
    config = configparser.ConfigParser(delimiters=["="]); config.read(ROOT/"settings.ini")
    assert config["DEFAULT"]["console_scripts"].strip() == "reranker-tune=reranker_tune.batch:main"

def test_runs_inside_nbs_are_refused(capsys):
    "nbdev reads every notebook under nbs/ as a source: an executed pipeline.ipynb there would rewrite pipeline.py."
    assert main(["run", "--runs-dir", str(ROOT/"nbs"/"runs")]) == 2
    assert "where nbdev_export would read" in capsys.readouterr().err
    assert not (ROOT/"nbs"/"runs"/"defaults").exists()
