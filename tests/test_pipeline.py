"The main job end to end: the real MiniLM on a slice of the sample, the tiny models on data where positives are found."
import json, re, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest, yaml
from sentence_transformers import CrossEncoder
from reranker_tune.data import sample_pairs
from reranker_tune.evaluation import RETRIEVER, CROSS_ENCODER, FUSION, choose_fusion_weight, read_eval_set, smoothed_curve
from reranker_tune.pipeline import run_pipeline, decide_on_dev, JobConfig
from reranker_tune.core import detect_precision

ROOT = Path(__file__).resolve().parents[1]

def small_source(n: int=40, offset: int=0) -> pd.DataFrame:
    "The first `n` questions of the sample: with top_k >= n the retriever hands every answer over, so positives are found."
    return sample_pairs().to_pandas().iloc[offset:offset + n].reset_index(drop=True)

def tiny_run(tmp_path, tiny_bert, tiny_embedder, name="run", **options):
    options = {"source": small_source(), "epochs": 1, "top_k": 40, "batch_size": 8, "learning_rate": 1e-3, **options}
    return run_pipeline(run_dir=tmp_path/name, embedder=tiny_embedder, base_model=tiny_bert, **options)

@pytest.fixture(scope="module")
def finished_run(tiny_bert, tiny_embedder, tmp_path_factory):
    "One finished tiny run, shared by the tests that read its folder."
    return tiny_run(tmp_path_factory.mktemp("runs"), tiny_bert, tiny_embedder)

def test_main_job_with_minilm_on_a_slice(tmp_path):
    "The real retriever finds most positives and the run folder is complete; serving it reproduces the shipped row."
    from reranker_tune.serving import served_metrics
    # 4 negatives a list and 64 tokens: half the training cost of the defaults' 9 and 128, the same code path;
    # 100 of the sample's 400 answers to search (MiniLM embeds them once), 40 questions: 24 train, 8 dev, 8 test
    result = run_pipeline(source=sample_pairs().select(range(100)), run_dir=tmp_path/"slice", max_queries=40,
                          epochs=1, top_k=10, batch_size=16, num_negatives=3, random_negatives=1, max_length=64)
    folder = Path(result["run_dir"])
    assert {"config.yaml", "metrics.json", "comparison.csv", "comparison.md", "model", "shipped.json", "heldout.jsonl",
            "per_query.csv", "plots", "README.md", "trainer_state.json"} <= {p.name for p in folder.iterdir()}
    metrics = json.loads((folder/"metrics.json").read_text())
    assert metrics[RETRIEVER]["queries"] == 8 and metrics[RETRIEVER]["found@10"] > 0.8
    assert metrics[RETRIEVER]["ndcg@10"] > 0.5, "MiniLM ranks the sample's answers well above chance"
    assert metrics["shipped"] in metrics and metrics["dev"]["ndcg@10"][RETRIEVER] > 0.5
    config = yaml.safe_load((folder/"config.yaml").read_text())
    assert config["max_queries"] == 40 and config["resolved"]["device"] == "cpu"
    served = served_metrics(folder, first_stage="recompute")
    assert served["ndcg@10"].mean() == pytest.approx(metrics[metrics["shipped"]]["ndcg@10"], abs=1e-6)
    assert not list(tmp_path.glob(".slice*")), "no staging folder is left"

def test_served_ranking_reproduces_shipped_row(finished_run, tmp_path):
    "Reranker(run_dir) on the held-out set gives the shipped row's NDCG@10; with weight 1 or 0, the other rows."
    from reranker_tune.serving import served_metrics
    folder = Path(finished_run["run_dir"])
    metrics = json.loads((folder/"metrics.json").read_text())
    assert metrics[RETRIEVER]["found@40"] == 1.0 and metrics[RETRIEVER]["ndcg@10"] > 0, "positives are found"
    for first_stage in ("stored", "recompute"):
        served = served_metrics(folder, first_stage=first_stage)
        assert len(served) == metrics[RETRIEVER]["queries"]
        assert served["ndcg@10"].mean() == pytest.approx(metrics[metrics["shipped"]]["ndcg@10"], abs=1e-6)
    import shutil
    for weight, row in ((1.0, CROSS_ENCODER), (0.0, RETRIEVER)):
        copy = Path(shutil.copytree(folder, tmp_path/f"weight-{weight:g}"))
        rule = json.loads((copy/"shipped.json").read_text())
        (copy/"shipped.json").write_text(json.dumps({**rule, "fusion_weight": weight, "shipped": row}))
        assert served_metrics(copy)["ndcg@10"].mean() == pytest.approx(metrics[row]["ndcg@10"], abs=1e-6)

def _lists(n: int, offset: int, copy_query: bool) -> pd.DataFrame:
    "Candidate lists from the sample; with `copy_query` the positive repeats the question, so the retriever ranks it first."
    df = sample_pairs().to_pandas().drop_duplicates("query").reset_index(drop=True)
    rows = []
    for i in range(offset, offset + n):
        positive = df["query"][i] if copy_query else df.answer[i]
        rows.append({"query": df["query"][i], "positive": [positive], "negative": [df.answer[(i + k*7) % len(df)] for k in range(1, 5)]})
    return pd.DataFrame(rows)

def test_weight_zero_serves_retriever_order(tmp_path, tiny_bert, tiny_embedder):
    "Dev lists whose positive is the question itself: the retriever is perfect there, nothing beats it, the run ships its order."
    from reranker_tune.serving import Reranker, served_metrics
    for name, n, offset, copy in (("train", 30, 0, False), ("dev", 8, 100, True), ("test", 10, 200, True)):
        _lists(n, offset, copy).to_json(tmp_path/f"{name}.jsonl", orient="records", lines=True)
    result = run_pipeline(source=tmp_path/"train.jsonl", dev_source=tmp_path/"dev.jsonl", test_source=tmp_path/"test.jsonl",
                          run_dir=tmp_path/"retriever-wins", embedder=tiny_embedder, base_model=tiny_bert, epochs=1)
    folder = Path(result["run_dir"])
    metrics, rule = json.loads((folder/"metrics.json").read_text()), json.loads((folder/"shipped.json").read_text())
    assert metrics["dev"]["ndcg@10"][RETRIEVER] == pytest.approx(1.0)
    assert (metrics["shipped"], rule["fusion_weight"], result["shipped"]) == (RETRIEVER, 0.0, RETRIEVER)
    assert "ships the retriever's order" in metrics["verdict"] and "ships the retriever's order" in rule["reason"]
    assert served_metrics(folder)["ndcg@10"].mean() == pytest.approx(metrics[RETRIEVER]["ndcg@10"], abs=1e-6)
    sample = read_eval_set(folder/"heldout.jsonl")[0]
    hits = Reranker(folder).rerank(sample["query"], sample["documents"], top_k=None)
    assert [h.text for h in hits] == sample["documents"], "the retriever's order, as evaluated"

def _dev_set(n: int=6):
    "Dev samples with three candidates each; the positive is the second by the retriever's scores."
    return [{"query": f"q{i}", "positive": ["b"], "documents": ["a", "b", "c"], "retriever_scores": [0.9, 0.8, 0.1]} for i in range(n)]

@pytest.mark.parametrize("case,scores,shipped", [
    ("tie", [[5.0, 0.0, 0.0]], RETRIEVER),            # the cross-encoder agrees with the retriever: no weight does better
    ("nothing wins", [[5.0, 0.0, 4.0]], RETRIEVER),   # the cross-encoder pushes the positive down
    ("cross-encoder wins", [[0.0, 0.99, 1.0], [0.0, 5.0, 0.0]], CROSS_ENCODER),
    ("fusion wins", [[0.0, 5.0, 0.0], [0.0, 0.0, 5.0]], FUSION),
])
def test_guard_decision_matches_message(case, scores, shipped):
    dev = _dev_set(len(scores))
    for s, x in zip(dev, scores):
        if case == "cross-encoder wins" and x == [0.0, 0.99, 1.0]: s.update(positive=["c"])
        if case == "fusion wins" and x == [0.0, 0.0, 5.0]: s.update(positive=["a"])
    weight, curve = choose_fusion_weight(dev, scores)
    decision = decide_on_dev(weight, curve)
    assert decision.shipped == shipped, (case, curve.to_dict())
    says = {RETRIEVER: "ships the retriever's order", CROSS_ENCODER: "ships the cross-encoder alone", FUSION: "ships the fusion"}
    assert says[shipped] in decision.reason and sum(s in decision.reason for s in says.values()) == 1
    smooth = smoothed_curve(curve) # the choice is read off the curve averaged over neighbouring weights
    assert smooth[weight] == smooth.max() and not (smooth[smooth.index < weight] == smooth.max()).any(), "ties go to the smaller weight"

def _lucky_dev(gains: int, losses: int, n: int=10):
    "Dev lists where the cross-encoder lifts `gains` queries' positive from third to first and drops `losses` from first to second."
    dev, scores = [], []
    for i in range(n):
        positive = "c" if i < gains else "a"
        dev.append({"query": f"q{i}", "positive": [positive], "documents": ["a", "b", "c"], "retriever_scores": [0.9, 0.8, 0.1]})
        scores.append([0.0, 0.0, 5.0] if i < gains else [0.0, 5.0, 0.0] if i < gains + losses else [5.0, 0.0, 0.0])
    return dev, scores

@pytest.mark.parametrize("gains,losses,shipped", [(2, 1, RETRIEVER), (10, 0, FUSION)])
def test_the_guard_ships_only_what_wins_on_unseen_dev_queries(monkeypatch, gains, losses, shipped):
    "A dev gain from two lucky queries looks like a win in sample; scored on folds it was not chosen on, it is noise."
    import reranker_tune.pipeline as pipeline
    dev, scores = _lucky_dev(gains, losses)
    monkeypatch.setattr(pipeline, "rerank_scores", lambda model, samples, **kw: scores)
    decision, curve, unseen = pipeline.choose_on_dev(None, dev)
    weight, in_sample = choose_fusion_weight(dev, scores)
    assert weight > 0 and in_sample[weight] > in_sample[0.0], "in sample, the cross-encoder looks better"
    assert decision.shipped == shipped and (decision.weight == 0.0) == (shipped == RETRIEVER)
    assert (unseen["low"] > 0) == (shipped != RETRIEVER)
    if shipped == RETRIEVER: assert "not clearly above zero" in decision.reason
    assert f"{unseen['difference']:+.3f}" in decision.reason, "the line quotes the cross-fitted gain"

def test_a_run_records_the_guard_it_passed(finished_run):
    "metrics.json keeps the cross-fitted dev comparison; anything but the retriever ships only with its CI above zero."
    folder = Path(finished_run["run_dir"])
    metrics = json.loads((folder/"metrics.json").read_text())
    unseen = metrics["dev"]["cross_fitted_vs_retriever"]
    assert {"difference", "low", "high", "p_value"} <= set(unseen)
    assert (metrics["shipped"] == RETRIEVER) or unseen["low"] > 0
    assert metrics["verdict"].splitlines()[0] == json.loads((folder/"shipped.json").read_text())["reason"]

def test_pipeline_notebook_runs_under_papermill(tmp_path, tiny_bert, tiny_embedder):
    "The notebook itself, headless, as users run it: parameters injected, results beside the executed notebook."
    small_source().to_json(tmp_path/"qa.jsonl", orient="records", lines=True)
    (tmp_path/"run").mkdir()
    out = tmp_path/"run"/"pipeline.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(ROOT/"nbs"/"06_pipeline.ipynb"), str(out), "-k", "python3",
           "-p", "run_dir", str(tmp_path/"run"), "-p", "embedder", tiny_embedder, "-p", "base_model", tiny_bert,
           "-p", "source", str(tmp_path/"qa.jsonl"), "-p", "epochs", "1", "-p", "top_k", "40", "-p", "device", "cpu",
           "--cwd", str(ROOT/"nbs")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path/"run"/"metrics.json").read_text())
    assert metrics[RETRIEVER]["queries"] == 8 and metrics[RETRIEVER]["found@40"] == 1.0
    assert "injected-parameters" in out.read_text()
    assert yaml.safe_load((tmp_path/"run"/"config.yaml").read_text())["device"] == "cpu"

def test_parameters_cell_and_job_config_agree():
    "The papermill parameters cell declares exactly the JobConfig fields, with the same defaults."
    import nbformat, dataclasses
    nb = nbformat.read(ROOT/"nbs"/"06_pipeline.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    declared = {}
    exec(cell.source, {}, declared)
    assert declared == {f.name: f.default for f in dataclasses.fields(JobConfig)}

def test_without_a_dev_split_the_cross_encoder_is_shipped_alone(tmp_path, tiny_bert, tiny_embedder):
    result = tiny_run(tmp_path, tiny_bert, tiny_embedder, "nodev", dev_size=0)
    assert list(result["table"].index) == [RETRIEVER, CROSS_ENCODER] and result["shipped"] == CROSS_ENCODER
    assert result["verdict"].startswith("No dev queries") and "unjudged" in result["verdict"]
    metrics = json.loads((Path(result["run_dir"])/"metrics.json").read_text())
    assert metrics["dev"] is None and metrics["shipped"] == CROSS_ENCODER

def test_a_dataframe_source_is_recorded_by_a_summary_in_the_config(finished_run):
    config = yaml.safe_load((Path(finished_run["run_dir"])/"config.yaml").read_text())
    assert config["source"].startswith("<in memory: DataFrame, ") and " rows, columns ['query', 'answer'], sha256 " in config["source"]
    assert config["top_k"] == 40
    assert set(config["resolved"]) >= {"device", "precision", "shape", "embedder", "base_model", "versions"}
    assert JobConfig.from_yaml(Path(finished_run["run_dir"])/"config.yaml").top_k == 40, "config.yaml reads back as a JobConfig"

def test_a_cpu_run_trains_in_its_precision_but_is_judged_and_served_in_fp32(finished_run):
    "bf16 reorders near-tied scores, so on a CPU every score a run reports or serves is float32."
    folder = Path(finished_run["run_dir"])
    resolved = yaml.safe_load((folder/"config.yaml").read_text())["resolved"]
    assert resolved["device"] == "cpu" and resolved["scoring_precision"] == "fp32"
    assert resolved["precision"] == detect_precision("cpu")
    assert json.loads((folder/"shipped.json").read_text())["cross_encoder"]["precision"] == "fp32"

def test_the_run_folder_is_readable(finished_run):
    "Per-query metrics, the plots, the trainer's state and a README that says what is served."
    folder = Path(finished_run["run_dir"])
    per_query = pd.read_csv(folder/"per_query.csv", index_col="query")
    metrics = json.loads((folder/"metrics.json").read_text())
    assert len(per_query) == metrics[RETRIEVER]["queries"]
    assert per_query[f"{RETRIEVER} ndcg@10"].mean() == pytest.approx(metrics[RETRIEVER]["ndcg@10"])
    assert {"ndcg_vs_size.png", "wins_losses.png", "dev_fusion_curve.png"} <= {p.name for p in (folder/"plots").iterdir()}
    state = json.loads((folder/"trainer_state.json").read_text())
    assert any("eval_dev_ndcg@10" in entry for entry in state["log_history"])
    readme = (folder/"README.md").read_text()
    assert "## Serving" in readme and "Reranker(" in readme and metrics["verdict"].splitlines()[1] in readme

def test_candidate_lists_with_their_own_test_and_dev_files(tmp_path, tiny_bert, tiny_embedder):
    "TrecQA's shape: given negatives are trained on, given test and dev lists are reranked as they are."
    for name, n, offset in (("train", 40, 0), ("dev", 10, 100), ("test", 12, 200)):
        _lists(n, offset, False).to_json(tmp_path/f"{name}.jsonl", orient="records", lines=True)
    result = run_pipeline(source=tmp_path/"train.jsonl", test_source=tmp_path/"test.jsonl", dev_source=tmp_path/"dev.jsonl",
                          run_dir=tmp_path/"lists", embedder=tiny_embedder, base_model=tiny_bert, max_negatives=2, epochs=1)
    metrics = json.loads((Path(result["run_dir"])/"metrics.json").read_text())
    assert metrics[RETRIEVER]["queries"] == 12 and metrics["training"]["rows"] == 40 # one list per query (the listwise default)
    assert metrics["training"]["pairs"] == 40*3 # 1 positive + 2 of 4 negatives each
    assert len(metrics["fusion"]["dev_ndcg@10_by_weight"]) == 11 and result["verdict"].startswith("On dev")
    config = yaml.safe_load((Path(result["run_dir"])/"config.yaml").read_text())
    assert config["resolved"]["shape"] == "candidate_lists" and not list((Path(result["run_dir"])/"training").glob("checkpoint-*"))

def test_grades_survive_into_graded_ndcg(tmp_path, tiny_bert, tiny_embedder):
    "Graded lists (LiveQA-Med's shape): the held-out set keeps the gains, and NDCG@10 is graded."
    from reranker_tune.evaluation import per_query_metrics
    lists = _lists(40, 0, False)
    graded = _lists(10, 200, False).assign(positive_grades=[[4]]*10, negative_grades=[[1, 2, 1, 3]]*10)
    lists.to_json(tmp_path/"train.jsonl", orient="records", lines=True)
    graded.to_json(tmp_path/"test.jsonl", orient="records", lines=True)
    result = run_pipeline(source=tmp_path/"train.jsonl", test_source=tmp_path/"test.jsonl", run_dir=tmp_path/"graded",
                          embedder=tiny_embedder, base_model=tiny_bert, epochs=1)
    folder = Path(result["run_dir"])
    heldout = read_eval_set(folder/"heldout.jsonl")
    assert all(sorted(s["gains"]) == [0, 0, 1, 2, 3] for s in heldout), "gains = grade - lowest grade (1)"
    binary = [{k: v for k, v in s.items() if k != "gains"} for s in heldout]
    metrics = json.loads((folder/"metrics.json").read_text())
    assert metrics[RETRIEVER]["ndcg@10"] == pytest.approx(per_query_metrics(heldout)["ndcg@10"].mean())
    assert metrics[RETRIEVER]["ndcg@10"] != pytest.approx(per_query_metrics(binary)["ndcg@10"].mean())
    assert yaml.safe_load((folder/"config.yaml").read_text())["resolved"]["grade_range"] == [1, 4]

def test_a_listwise_loss_trains_on_mined_lists_and_epochs_come_from_the_data(tmp_path, tiny_bert, tiny_embedder):
    result = tiny_run(tmp_path, tiny_bert, tiny_embedder, "lambda", loss="LambdaLoss", epochs=None, patience=1)
    metrics = json.loads((Path(result["run_dir"])/"metrics.json").read_text())
    assert metrics["training"]["loss"] == "LambdaLoss" and metrics["training"]["rows"] == 26 # one list per training query
    assert metrics["training"]["epochs"] == 6 # 26 lists, 4 steps an epoch: the cap
    assert result["model"].activation_fn.__class__.__name__ == "Identity" # listwise losses read raw logits

def test_the_rerank_command_serves_the_run_folder(finished_run, tmp_path, capsys):
    "`reranker-tune rerank RUN_DIR` prints the order Reranker(run_dir) serves, the shipped rule included."
    from reranker_tune.cli import main
    from reranker_tune.serving import Reranker
    folder = Path(finished_run["run_dir"])
    sample = read_eval_set(folder/"heldout.jsonl")[0]
    (tmp_path/"docs.json").write_text(json.dumps(sample["documents"]))
    assert main(["rerank", str(folder), "--query", sample["query"], "--documents", str(tmp_path/"docs.json"), "--top-k", "5"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    served = Reranker(folder).rerank(sample["query"], sample["documents"], top_k=5)
    assert [p["id"] for p in printed] == [h.id for h in served] and len(printed) == 5


def test_the_model_card_is_written_for_the_run(finished_run):
    "What an outside tool loading model/ reads first: a title, the held-out table, a warning, how to serve the rule."
    folder = Path(finished_run["run_dir"])
    card = (folder/"model"/"README.md").read_text()
    body = card.split("\n---\n", 1)[1]
    assert body.lstrip().startswith(f"# `{folder.name}`: a cross-encoder reranker trained with reranker_tune")
    for boilerplate in ("cross_encoder_model_id", "Download from the", "# CrossEncoder\n"):
        assert boilerplate not in card
    assert body.index("## Held-out queries") < body.index("## Serving what the run ships")
    metrics = json.loads((folder/"metrics.json").read_text())
    warned = "this folder alone is not what the run ships" in body
    assert warned == (metrics["shipped"] != CROSS_ENCODER)
    assert f"Reranker({folder.name!r})" in body # the run's name, not this machine's path to it
    assert ("z(logits)" in body) == (metrics["shipped"] == FUSION)
    heldout = read_eval_set(folder)
    assert any(s["query"] in body for s in heldout), "the examples come from the held-out questions"
    assert "name: " + f"{folder.name} (reranker_tune)" in card.split("\n---\n", 1)[0], "the metadata names the run"

def test_the_card_s_formula_ranks_as_the_run_serves(finished_run, tmp_path, monkeypatch):
    "The plain sentence-transformers code in the card, run as written, gives the order Reranker(run_dir) serves."
    import re
    from reranker_tune.serving import Reranker
    folder = Path(finished_run["run_dir"])
    body = (folder/"model"/"README.md").read_text()
    code = re.findall(r"### Without reranker_tune.*?```python\n(.*?)```", body, re.S)[0]
    monkeypatch.chdir(folder.parent) # the card names the model folder from the run's parent
    for sample in read_eval_set(folder)[:3]:
        lines = [l for l in code.splitlines() if not l.startswith(("query = ", "documents = "))]
        scope = {"query": sample["query"], "documents": sample["documents"]}
        exec("\n".join(lines), scope)
        served = [hit.text for hit in Reranker(folder).rerank(sample["query"], sample["documents"], top_k=None)]
        assert scope["ranking"] == served

def test_per_query_rows_join_heldout_by_query_id(finished_run):
    folder = Path(finished_run["run_dir"])
    table = pd.read_csv(folder/"per_query.csv", index_col="query_id")
    heldout = read_eval_set(folder)
    assert list(table.index) == list(range(len(heldout)))
    assert list(table["query"]) == [s["query"] for s in heldout]
    assert not (folder/"training"/"eval").exists(), "no empty folder left behind by the trainer"

def test_a_terminal_run_logs_one_readable_line_per_dev_evaluation(tmp_path, tiny_bert, tiny_embedder, capfd):
    "Outside a notebook the trainer printed its raw dict at every evaluation; the job prints a sentence instead."
    run_pipeline(source=small_source(), run_dir=tmp_path/"run", embedder=tiny_embedder, base_model=tiny_bert,
                 epochs=1, top_k=40, batch_size=8)
    log = "".join(capfd.readouterr()) # what a terminal shows: both streams, written by Python or not
    assert "{'eval_" not in log and "{'loss'" not in log and "'train_runtime'" not in log
    lines = [l.strip() for l in re.split(r"[\r\n]", log) if re.match(r"\s*step \d+/\d+: dev ndcg@10 ", l)]
    assert len(lines) == 4 and all("(best so far " in l for l in lines), lines
