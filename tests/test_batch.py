"Batch runs through papermill with the tiny models: a sweep with a run that fails on purpose, re-runs, --force, the leaderboard."
import json, os, shutil, sys
from pathlib import Path
import pandas as pd
import pytest, yaml
from reranker_tune import batch
from reranker_tune.batch import expand_sweep, load_sweep, offline_aware_environment
from reranker_tune.cli import main # the command is the entry point of these end-to-end runs
from reranker_tune.evaluation import RETRIEVER, CROSS_ENCODER, FUSION
from reranker_tune.core import write_folder_mark, FOLDER_MARK
from reranker_tune.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parents[1]

def _write_sweep(path: Path, runs_dir: Path, runs: list[dict], tiny_bert: str, tiny_embedder: str) -> Path:
    base = {"embedder": tiny_embedder, "base_model": tiny_bert, "max_queries": 20, "epochs": 1, "top_k": 5, "dev_size": 0}
    path.write_text(yaml.safe_dump({"runs_dir": str(runs_dir), "base": base, "runs": runs}))
    return path

def _mtimes(runs_dir: Path, names) -> dict:
    return {n: (runs_dir/n/"metrics.json").stat().st_mtime_ns for n in names}

def _running_records(root: Path) -> list[Path]:
    "batch.json files anywhere under `root` (hidden folders included) that still say running."
    return [p for p in root.rglob("batch.json") if json.loads(p.read_text()).get("status") == "running"]

def test_sweep_keeps_going_past_a_failure_skips_finished_runs_and_forces(tmp_path, tiny_bert, tiny_embedder, capsys):
    runs_dir = tmp_path/"runs"
    # a run the batch did not make (run_pipeline, as `make demo` does) stands on the leaderboard beside the sweep's:
    # in-process, it spares the suite a kernel
    run_pipeline(run_dir=runs_dir/"good-b", embedder=tiny_embedder, base_model=tiny_bert, max_queries=20, epochs=1,
                 top_k=5, dev_size=0, num_negatives=1)
    capsys.readouterr()
    runs = [{"name": "broken", "source": str(tmp_path/"missing.jsonl")},
            {"name": "good-a", "learning_rate": "1e-4", "device": "cpu"}]
    sweep = _write_sweep(tmp_path/"sweep.yaml", runs_dir, runs, tiny_bert, tiny_embedder)

    assert main(["sweep", str(sweep)]) == 1
    out, err = capsys.readouterr()
    assert "failed broken in 0 s" in out and "finished good-a" in out, out # refused before a kernel started
    assert out.index("failed broken") < out.index("run good-a"), "the sweep goes on past the failed run"
    assert "Failed runs: broken " in err and "good-a" not in err
    folder = runs_dir/"good-a"
    assert {"pipeline.ipynb", "metrics.json", "comparison.csv", "config.yaml", "batch.json", "model"} <= {p.name for p in folder.iterdir()}
    assert "injected-parameters" in (folder/"pipeline.ipynb").read_text()
    record = json.loads((folder/"batch.json").read_text())
    assert record["status"] == "finished" and record["device"] == "cpu" and record["hub_offline"] is True
    # installed users have no nbs/: a notebook made from JobConfig's fields (`device` among them) runs
    assert record["notebook"] == "generated (run_pipeline)"
    assert "run_pipeline(JobConfig(source=source" in (folder/"pipeline.ipynb").read_text()
    config = yaml.safe_load((folder/"config.yaml").read_text())
    assert config["run_dir"] == str(folder.resolve()) and config["device"] == "cpu"
    assert config["learning_rate"] == 1e-4 # "1e-4" read as a number
    # the failed attempt is kept where it cannot pass for a run; nothing says "running"; no staging folder is left
    assert not (runs_dir/"broken"/"metrics.json").exists() and not (runs_dir/"broken"/"batch.json").exists()
    failed = runs_dir/"broken.failed"
    assert json.loads((failed/"batch.json").read_text())["status"] == "failed"
    assert "missing.jsonl: no such file or folder" in (failed/"error.txt").read_text()
    assert not (failed/"pipeline.ipynb").exists(), "a missing file is refused before a kernel starts"
    assert _running_records(runs_dir) == [] and not list(runs_dir.glob(".*"))

    # again: the finished run is skipped (same metrics.json), the failed one is tried again
    before = _mtimes(runs_dir, ["good-a", "good-b"])
    assert main(["sweep", str(sweep)]) == 1
    out = capsys.readouterr().out
    assert "skip good-a" in out and "run broken" in out
    assert _mtimes(runs_dir, ["good-a", "good-b"]) == before

    # a failing re-run of a finished run (other parameters, same name) leaves the finished run byte for byte
    finished = {f: (runs_dir/"good-a"/f).read_bytes() for f in ("metrics.json", "batch.json", "pipeline.ipynb")}
    # ... here failing in its kernel (a file with no known columns): the partial notebook shows the failed cell
    (tmp_path/"wrong.jsonl").write_text('{"title": "a", "body": "b"}\n')
    failing_a = _write_sweep(tmp_path/"failing_a.yaml", runs_dir, [{"name": "good-a", "source": str(tmp_path/"wrong.jsonl")}],
                             tiny_bert, tiny_embedder)
    assert main(["sweep", str(failing_a)]) == 1
    assert f"{runs_dir/'good-a'} is kept until it finishes: other parameters" in capsys.readouterr().out
    assert {f: (runs_dir/"good-a"/f).read_bytes() for f in finished} == finished
    assert "wrong.jsonl" in (runs_dir/"good-a.failed"/"error.txt").read_text()
    partial = json.loads((runs_dir/"good-a.failed"/"pipeline.ipynb").read_text())
    assert any(o.get("output_type") == "error" for c in partial["cells"] if c["cell_type"] == "code" for o in c["outputs"])
    assert _running_records(runs_dir) == []

    # --force re-executes a finished run (a sweep file that lists only good-a, same runs_dir); success removes good-a.failed
    only_a = _write_sweep(tmp_path/"only_a.yaml", runs_dir, runs[1:], tiny_bert, tiny_embedder)
    assert main(["sweep", str(only_a), "--force"]) == 0
    assert "is kept until it finishes: --force" in capsys.readouterr().out
    assert _mtimes(runs_dir, ["good-a"])["good-a"] != before["good-a"]
    assert not (runs_dir/"good-a.failed").exists() and json.loads((runs_dir/"good-a"/"batch.json").read_text())["status"] == "finished"

    # the leaderboard: finished runs only (not broken.failed), with the parameters that vary; no dev set here: name order
    assert main(["leaderboard", str(runs_dir)]) == 0
    table = pd.read_csv(runs_dir/"leaderboard.csv")
    assert list(table["run"]) == ["good-a", "good-b"] and table["dev ndcg@10"].isna().all()
    assert {"shipped", "test ndcg@10", "retriever test ndcg@10", "gain", "gain low", "gain high", "p_value", "verdict",
            "queries", "minutes", "learning_rate", "num_negatives"} <= set(table.columns)
    metrics = json.loads((runs_dir/"good-a"/"metrics.json").read_text())
    assert table.loc[0, "test ndcg@10"] == pytest.approx(metrics[table.loc[0, "shipped"]]["ndcg@10"])
    assert (table["gain low"] <= table["gain"]).all() and (table["gain"] <= table["gain high"]).all()
    assert table.loc[0, "run"] in (runs_dir/"leaderboard.md").read_text().splitlines()[2]
    assert (runs_dir/"leaderboard.png").read_bytes()[:4] == b"\x89PNG"

    # another metric, written elsewhere (test_cli runs the command as a script, python -m reranker_tune.cli)
    assert main(["leaderboard", str(runs_dir), "--metric", "mrr@10", "--out", str(tmp_path/"by-mrr")]) == 0
    by_mrr = pd.read_csv(tmp_path/"by-mrr"/"leaderboard.csv")
    assert list(by_mrr["run"]) == ["good-a", "good-b"] and by_mrr["gain low"].isna().all()
    assert by_mrr.loc[0, "test mrr@10"] == pytest.approx(metrics[by_mrr.loc[0, "shipped"]]["mrr@10"])

def test_the_pipeline_notebook_refuses_a_parameter_it_lacks(tmp_path, capsys):
    "A notebook whose parameters cell lacks a parameter the run sets: caught before any run starts, exit status 2."
    import nbformat
    notebook = batch.driver_notebook()
    cell = notebook.cells[1]
    cell.source = "\n".join(l for l in cell.source.splitlines() if not l.startswith("device ="))
    nbformat.write(notebook, tmp_path/"old.ipynb")
    assert main(["run", "--param", "device=cpu", "--runs-dir", str(tmp_path/"runs"), "--notebook", str(tmp_path/"old.ipynb")]) == 2
    assert "has no parameter for {'device-cpu': ['device']}" in capsys.readouterr().err
    assert not (tmp_path/"runs").exists()

def test_a_value_of_the_wrong_type_stops_the_sweep_before_any_run(tmp_path, capsys):
    sweep = tmp_path/"bad.yaml"
    sweep.write_text(f"runs_dir: {tmp_path/'runs'}\ngrid:\n  batch_size: [8, abc]\n")
    assert main(["sweep", str(sweep)]) == 2
    assert f"{sweep}: batch_size='abc': a whole number >= 1 or None is allowed" in capsys.readouterr().err
    assert not (tmp_path/"runs").exists()

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

def test_runs_inside_nbs_are_refused(capsys):
    "nbdev reads every notebook under nbs/ as a source: an executed pipeline.ipynb there would rewrite pipeline.py."
    assert main(["run", "--runs-dir", str(ROOT/"nbs"/"runs")]) == 2
    assert "where nbdev_export would read" in capsys.readouterr().err
    assert not (ROOT/"nbs"/"runs"/"defaults").exists()

# ---- one run's folders: staged aside, swapped in at the end (no papermill: `_execute` is replaced) ----

def _fake_execute(mode: str, fail: list):
    """Stands in for papermill + run_pipeline: writes the notebook, then the run folder in place ('direct', today's
    run_pipeline) or built aside and swapped in ('swap', the atomic run_pipeline); raises `fail[0]` if any."""
    def execute(notebook, output, run_dir, params, log_output):
        output.write_text(json.dumps({"cells": [], "params": params}))
        if fail: raise fail[0]
        if mode == "direct":
            run_dir.mkdir(parents=True, exist_ok=True); (run_dir/"metrics.json").write_text(json.dumps(params))
            return
        aside = run_dir.with_name(f".{run_dir.name}.partial-x1"); aside.mkdir()
        (aside/"metrics.json").write_text(json.dumps(params))
        if run_dir.exists(): shutil.rmtree(run_dir)
        aside.rename(run_dir)
    return execute

def _files(folder: Path) -> dict: return {p.name: p.read_bytes() for p in folder.iterdir()}
def _status(folder: Path) -> str: return json.loads((folder/"batch.json").read_text())["status"]

@pytest.mark.parametrize("mode", ["direct", "swap"])
def test_a_run_folder_changes_only_when_a_run_finishes(tmp_path, monkeypatch, mode):
    fail = []
    monkeypatch.setattr(batch, "_execute", _fake_execute(mode, fail))
    runs_dir, name, notebook = tmp_path/"runs", "lr", Path("nb.ipynb")
    assert batch.execute_run(name, {"epochs": 1}, runs_dir, notebook) == "finished"
    folder = runs_dir/name
    assert sorted(p.name for p in runs_dir.iterdir()) == [name] # no staging folder left
    assert sorted(_files(folder)) == ["batch.json", "metrics.json", "pipeline.ipynb"]
    assert _status(folder) == "finished" and batch.is_finished(folder, {"epochs": 1})
    finished = _files(folder)

    fail.append(RuntimeError("first failure"))
    assert batch.execute_run(name, {"epochs": 2}, runs_dir, notebook) == "failed"
    assert _files(folder) == finished # the finished run, untouched
    failed = runs_dir/f"{name}.failed"
    assert sorted(_files(failed)) == [FOLDER_MARK, "batch.json", "error.txt", "pipeline.ipynb"]
    assert _status(failed) == "failed" and not batch.is_finished(failed, {"epochs": 2})
    fail[0] = RuntimeError("second failure") # the next failure replaces the kept attempt
    assert batch.execute_run(name, {"epochs": 2}, runs_dir, notebook) == "failed"
    assert (failed/"error.txt").read_text() == "RuntimeError: second failure\n"
    assert sorted(p.name for p in runs_dir.iterdir()) == [name, f"{name}.failed"]

    fail.clear() # a later success replaces the run and removes the failed attempt
    assert batch.execute_run(name, {"epochs": 2}, runs_dir, notebook) == "finished"
    assert sorted(p.name for p in runs_dir.iterdir()) == [name]
    assert json.loads((folder/"metrics.json").read_text()) == {"epochs": 2}
    assert batch.is_finished(folder, {"epochs": 2}) and _status(folder) == "finished"

def _finished_run(folder: Path, params: dict) -> dict:
    folder.mkdir(parents=True); write_folder_mark(folder, "run", finished=True) # as run_pipeline leaves it
    (folder/"metrics.json").write_text(json.dumps({RETRIEVER: {}}))
    (folder/"batch.json").write_text(json.dumps({"parameters": params, "status": "finished"}))
    return _files(folder)

@pytest.mark.parametrize("previous", [True, False])
def test_ctrl_c_during_a_run_prints_one_line_and_leaves_nothing_running(tmp_path, monkeypatch, capsys, previous):
    def interrupted(*args, **kwargs): raise KeyboardInterrupt
    monkeypatch.setattr(batch.papermill, "execute_notebook", interrupted)
    runs_dir = tmp_path/"runs"
    before = _finished_run(runs_dir/"x", {"epochs": 2}) if previous else {}
    assert main(["run", "--name", "x", "--runs-dir", str(runs_dir), "--param", "epochs=1"]) == 130
    err = capsys.readouterr().err.splitlines()
    kept = "the previous finished run is kept" if previous else "and it has no finished run"
    assert err == [f"reranker-tune: interrupted; x was not finished, {kept}"]
    assert _running_records(tmp_path) == [] and not list(runs_dir.glob(".*"))
    assert not (runs_dir/"x.failed").exists()
    if previous: assert _files(runs_dir/"x") == before

# ---- the leaderboard over hand-made run folders ----

def _run_folder(runs_dir: Path, name: str, test: float, dev: float|None, config: dict,
                shipped: str=FUSION, retriever: float=0.70) -> Path:
    "A run folder as the pipeline writes it (the keys of issue 10's contract), with made-up numbers."
    folder = runs_dir/name; folder.mkdir(parents=True)
    rows = {RETRIEVER: {"queries": 20, "ndcg@10": retriever, "mrr@10": retriever - 0.05},
            CROSS_ENCODER: {"queries": 20, "ndcg@10": test - 0.01, "mrr@10": test - 0.06},
            FUSION: {"queries": 20, "ndcg@10": test, "mrr@10": test - 0.05}}
    gain = test - retriever
    paired = {"difference": gain, "low": gain - 0.03, "high": gain + 0.03, "p_value": 0.04, "wins": 8, "losses": 3,
              "verdict": "win"}
    dev_rows = None if dev is None else {"queries": 9, "ndcg@10": {RETRIEVER: 0.6, CROSS_ENCODER: 0.61, shipped: dev}}
    metrics = {**rows, "shipped": shipped, "fusion": {"weight": 0.4}, "seconds": {"total": 120.0},
               "shipped_vs_retriever": paired, "dev": dev_rows}
    (folder/"metrics.json").write_text(json.dumps(metrics))
    (folder/"config.yaml").write_text(yaml.safe_dump({**config, "resolved": {"device": "cpu"}}))
    return folder

def test_leaderboard_ranks_by_dev_and_shows_test_beside_it(tmp_path, capsys):
    runs_dir = tmp_path/"runs"
    _run_folder(runs_dir, "best-test", test=0.90, dev=0.70, config={"epochs": 1, "max_queries": None, "seed": 12})
    for name, test, dev in [("best-dev", 0.80, 0.75), ("a-no-dev", 0.95, None), ("b-no-dev", 0.60, None)]:
        _run_folder(runs_dir, name, test=test, dev=dev, config={"epochs": 2, "max_queries": 20, "seed": 12})
    for aside in (".best-dev.partial-x1", "x.failed"): # a run being written, a failed attempt: not runs
        (runs_dir/aside).mkdir(); (runs_dir/aside/"metrics.json").write_text("{")
    table = batch.leaderboard(runs_dir)
    assert list(table.index) == ["best-dev", "best-test", "a-no-dev", "b-no-dev"] # by dev; no dev last, by name
    assert list(table.columns[:5]) == ["shipped", "dev ndcg@10", "test ndcg@10", "retriever test ndcg@10", "gain"]
    assert table.loc["best-dev", "dev ndcg@10"] == 0.75 and table.loc["best-dev", "test ndcg@10"] == 0.80
    assert table.loc["best-test", "gain"] == pytest.approx(0.20)
    assert table.loc["best-test", "gain low"] == pytest.approx(0.17)
    # max_queries is null in one run and 20 in the others: varying; seed is the same everywhere: not shown
    assert table.attrs["parameters"] == ["max_queries", "epochs"] and "seed" not in table # run_pipeline's order
    assert table.loc["best-test", "max_queries"] is None and table.loc["best-dev", "max_queries"] == 20
    # --metric picks the test score shown; the ranking stays on dev
    assert main(["leaderboard", str(runs_dir), "--metric", "mrr@10"]) == 0
    by_mrr = pd.read_csv(runs_dir/"leaderboard.csv")
    assert list(by_mrr["run"]) == list(table.index)
    assert "test mrr@10" in by_mrr and "test ndcg@10" not in by_mrr
    assert by_mrr.loc[0, "test mrr@10"] == pytest.approx(0.75) and by_mrr["gain low"].isna().all()
    assert "best-dev" in capsys.readouterr().out.splitlines()[2]

def test_leaderboard_refuses_a_run_without_the_recorded_shipped_system(tmp_path, capsys):
    folder = _run_folder(tmp_path/"runs", "old", test=0.8, dev=None, config={"epochs": 1})
    metrics = json.loads((folder/"metrics.json").read_text())
    del metrics["shipped"], metrics["dev"] # written before the pipeline recorded them: not re-derived
    (folder/"metrics.json").write_text(json.dumps(metrics))
    assert main(["leaderboard", str(tmp_path/"runs")]) == 2
    assert "no shipped system recorded" in capsys.readouterr().err

ROWS = json.dumps({RETRIEVER: {"ndcg@10": 0.7}, CROSS_ENCODER: {"ndcg@10": 0.8}})[1:-1]
SHIPS_IT = json.dumps({"shipped": CROSS_ENCODER})[:-1] + ", "

@pytest.mark.parametrize("content, message", [
    (json.dumps({RETRIEVER: {"ndcg@10": 0.7}})[:-2], "metrics.json: line 1 is not valid JSON ("),
    (SHIPS_IT + json.dumps({CROSS_ENCODER: {"ndcg@10": 0.8}})[1:], f"metrics.json: missing key(s) ['{RETRIEVER}']"),
    ('[1, 2]', "metrics.json: expected a JSON object, got list"),
    (SHIPS_IT + ROWS + ', "dev": [1]}', 'metrics.json: "dev" must be null or')])
def test_leaderboard_over_a_broken_metrics_file_is_one_line_naming_it(tmp_path, capsys, content, message):
    runs_dir = tmp_path/"runs"
    _run_folder(runs_dir, "fine", test=0.8, dev=0.7, config={"epochs": 1})
    (runs_dir/"x").mkdir(); (runs_dir/"x"/"metrics.json").write_text(content)
    assert main(["leaderboard", str(runs_dir)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"reranker-tune: error: {runs_dir/'x'/'metrics.json'}: ")
    assert message in err[0] and not (runs_dir/"leaderboard.csv").exists()

def test_leaderboard_over_a_broken_config_is_one_line_naming_it(tmp_path, capsys):
    folder = _run_folder(tmp_path/"runs", "fine", test=0.8, dev=0.7, config={"epochs": 1})
    (folder/"config.yaml").write_text("epochs: [1,\n")
    assert main(["leaderboard", str(tmp_path/"runs")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"{folder/'config.yaml'}: not valid YAML" in err[0]

@pytest.mark.parametrize("content, message", [
    ("", "empty sweep: give `base`, `grid` or `runs`"), ("# to do\n", "empty sweep: give"),
    ("runs_dir: runs/x\n", "empty sweep: no `base`, `grid` or `runs`"),
    ("base: {epochs: 1}\nruns: []\n", "empty sweep: `runs` is an empty list"),
    ("grid: {epochs: []}\n", "empty sweep: grid parameter(s) ['epochs'] have no values"),
    ("- epochs: 1\n", "a sweep is a mapping with keys"), ("just text\n", "a sweep is a mapping with keys"),
    ("grid: [1, 2]\n", "`grid` must be a mapping"), ("base: {epochs: [1,\n", "not valid YAML ("),
    ("base: {output_dir: runs/x}\n", "'output_dir' is now called 'run_dir'")])
def test_a_sweep_that_runs_nothing_is_refused_naming_the_file(tmp_path, capsys, content, message):
    sweep = tmp_path/"sweep.yaml"; sweep.write_text(content)
    assert main(["sweep", str(sweep), "--runs-dir", str(tmp_path/"runs")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"reranker-tune: error: {sweep}: ") and message in err[0]
    assert not (tmp_path/"runs").exists()
