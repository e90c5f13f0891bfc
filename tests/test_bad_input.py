"Every kind of bad input gets a clear error naming the file, column and rows, and nothing is written."
import json, warnings
from pathlib import Path
import pandas as pd, pytest, datasets
from reranker_tune.data import DataError, load_source
from reranker_tune.losses import check_dataset_for_loss
from reranker_tune.pipeline import run_pipeline

def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path

GOOD = [{"query": f"question {i}", "answer": f"answer {i}"} for i in range(6)]

def _broken_dataset(folder):
    datasets.Dataset.from_list(GOOD).save_to_disk(str(folder))
    (folder/"state.json").write_text('{"_data_files": [')
    return folder

CASES = {
    "missing column": (lambda d: _jsonl(d/"qa.jsonl", [{"query": "q"}]), "fit no known shape"),
    "a column an alias renamed": (lambda d: (d/"qa.csv").write_text("question,reply\nq,a\n") and d/"qa.csv",
                                  "columns ['question', 'reply'] fit no known shape"),
    "zero-width text": (lambda d: _jsonl(d/"qa.jsonl", GOOD + [{"query": "\u200b\u200c", "answer": "a"}]),
                        "column 'query' is empty, whitespace-only or not text in 1 row(s) (0-based: 6)"),
    "a broken dataset folder": (lambda d: _broken_dataset(d/"qa"), "state.json: line 1 is not valid JSON"),
    "empty text": (lambda d: _jsonl(d/"qa.jsonl", GOOD + [{"query": "q", "answer": ""}]), "column 'answer' is empty, whitespace-only or not text in 1 row(s) (0-based: 6)"),
    "whitespace-only text": (lambda d: _jsonl(d/"qa.jsonl", [{"query": "  \t", "answer": "a"}] + GOOD), "column 'query' is empty, whitespace-only or not text in 1 row(s) (0-based: 0)"),
    "null text": (lambda d: _jsonl(d/"qa.jsonl", GOOD + [{"query": None, "answer": "a"}]), "column 'query' is empty"),
    "missing label": (lambda d: (d/"l.csv").write_text("query,document,label\nq,a,1\nq,b,\n") and d/"l.csv", "column 'label' is missing (None, NaN or empty) in 1 row(s) (0-based: 1)"),
    "NaN label": (lambda d: _jsonl(d/"l.jsonl", [{"query": "q", "document": "a", "label": 1}, {"query": "q", "document": "b", "label": float("nan")}]), "column 'label' is missing"),
    "non-numeric label": (lambda d: (d/"l.csv").write_text("query,document,label\nq,a,1\nq,b,yes\n") and d/"l.csv", "column 'label' is not a number (e.g. 'yes') in 1 row(s) (0-based: 1)"),
    "no positive": (lambda d: _jsonl(d/"c.jsonl", [{"query": "q", "positive": ["a"], "negative": []}, {"query": "r", "positive": [], "negative": ["n"]}]), "column 'positive' has no positive in 1 row(s) (0-based: 1)"),
    "empty dataset": (lambda d: (d/"e.csv").write_text("query,answer\n") and d/"e.csv", "has no rows"),
    "unreadable file": (lambda d: (d/"x.parquet").write_bytes(b"not parquet at all") and d/"x.parquet", "cannot be read as parquet"),
    "non-UTF-8 file": (lambda d: (d/"l1.csv").write_bytes("query,answer\nq,a\ncaf\xe9,b\n".encode("latin-1")) and d/"l1.csv", "line 3 is not UTF-8"),
    "path that does not exist": (lambda d: d/"nowhere.jsonl", "no such file"),
    "grades of the wrong length": (lambda d: _jsonl(d/"g.jsonl", [{"query": "q", "positive": ["a"], "negative": ["b"], "positive_grades": [2, 3]}]), "'positive_grades' does not have one grade per 'positive' text"),
}

@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_and_nothing_is_written(case, tmp_path, tiny_bert, tiny_embedder):
    make, message = CASES[case]
    (tmp_path/"in").mkdir()
    source = make(tmp_path/"in")
    run_dir = tmp_path/"runs"/"bad"
    with pytest.raises(DataError) as err:
        run_pipeline(source=source, run_dir=run_dir, embedder=tiny_embedder, base_model=tiny_bert)
    assert message in str(err.value)
    assert str(source) in str(err.value), "the error names the file"
    assert not (tmp_path/"runs").exists(), "nothing is written for bad input"

def test_extra_columns_are_refused_unless_dropped(tmp_path):
    path = _jsonl(tmp_path/"qa.jsonl", [dict(r, views=1) for r in GOOD])
    with pytest.raises(DataError, match=r"extra column\(s\) \['views'\]"): load_source(path)
    assert load_source(path, extra_columns="drop").column_names == ["query", "answer"]

def test_duplicates_are_dropped_with_a_counted_warning(tmp_path):
    path = _jsonl(tmp_path/"qa.jsonl", GOOD + GOOD[:2])
    with pytest.warns(UserWarning, match=r"qa.jsonl: dropped 2 exact duplicate row\(s\)"):
        assert len(load_source(path)) == 6

def test_bce_labels_outside_0_1_name_the_rows():
    ds = datasets.Dataset.from_dict({"query": ["q"]*3, "document": ["a", "b", "c"], "label": [1.0, 2.0, -1.0]})
    with pytest.raises(DataError, match=r"column 'label' is outside \[0, 1\].* in 2 row\(s\) \(0-based: 1, 2\)"):
        check_dataset_for_loss(ds, "BinaryCrossEntropyLoss")

def test_sqlite_with_several_tables_asks_which(tmp_path):
    import sqlite3
    with sqlite3.connect(tmp_path/"qa.db") as con:
        pd.DataFrame(GOOD).to_sql("faq", con, index=False); pd.DataFrame(GOOD).to_sql("other", con, index=False)
    with pytest.raises(DataError, match="choose one with table=.*the job's `table` parameter"): load_source(tmp_path/"qa.db")
    assert len(load_source(tmp_path/"qa.db", table="faq")) == 6

def test_hub_id_fails_fast_when_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="offline"): load_source("some-user/some-dataset-that-is-not-cached")

# --- the job's parameters and data: refused before anything is written, the previous finished run kept ------------

from reranker_tune.config import ConfigError
from reranker_tune.data import sample_pairs

@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_bert, tiny_embedder):
    "A finished tiny run at runs/demo, and the bytes of its metrics.json."
    runs = tmp_path_factory.mktemp("job")/"runs"
    source = sample_pairs().to_pandas().head(30)
    run_pipeline(source=source, run_dir=runs/"demo", embedder=tiny_embedder, base_model=tiny_bert, epochs=1, top_k=30)
    return runs, (runs/"demo"/"metrics.json").read_bytes()

def _labelled(path, labels):
    rows = [{"query": f"question {i//2}", "document": f"answer {i}", "label": v} for i, v in enumerate(labels)]
    return _jsonl(path, rows)

PARAMETERS = {
    "negative epochs": ({"epochs": -1}, "epochs=-1: a number > 0"),
    "non-numeric epochs": ({"epochs": "two"}, "epochs='two'"),
    "batch size 0": ({"batch_size": 0}, "batch_size=0: a whole number >= 1"),
    "learning rate abc": ({"learning_rate": "abc"}, "learning_rate='abc': a number > 0"),
    "top_k 0": ({"top_k": 0}, "top_k=0: a whole number >= 1"),
    "max_length 0": ({"max_length": 0}, "max_length=0"),
    "max_length above positions": ({"max_length": 100_000}, "max_length=100000: at most 256"),
    "negative random negatives": ({"random_negatives": -2}, "random_negatives=-2"),
    "unknown device": ({"device": "gpu0"}, "device='gpu0'"),
    "unknown precision": ({"precision": "int8"}, "precision='int8': one of ('bf16', 'fp16', 'fp32') or None"),
    "fp16 on a CPU": ({"precision": "fp16", "device": "cpu"}, "fp16 needs a CUDA device"),
    "unknown loss": ({"loss": "FocalLoss"}, "loss='FocalLoss': unknown loss"),
    "a loss the job cannot feed (MNRL)": ({"loss": "MultipleNegativesRankingLoss"}, "a loss the job cannot feed"),
    "a loss the job cannot feed (CE)": ({"loss": "CrossEntropyLoss"}, "a loss the job cannot feed"),
    "unknown parameter": ({"epoch": 2}, "unknown parameter(s) ['epoch']"),
    "an old name (train --config's)": ({"base": "x"}, "'base' is now called 'base_model'"),
}

@pytest.mark.parametrize("case", list(PARAMETERS))
def test_bad_parameters_are_refused_and_the_previous_run_is_kept(case, finished, tiny_bert, tiny_embedder):
    runs, before = finished
    options, message = PARAMETERS[case]
    with pytest.raises(ConfigError) as err:
        run_pipeline(run_dir=runs/"demo", embedder=tiny_embedder, base_model=tiny_bert, **options)
    assert message in str(err.value)
    assert (runs/"demo"/"metrics.json").read_bytes() == before and sorted(p.name for p in runs.iterdir()) == ["demo"]

JOB_DATA = {
    "labels 2 and -1": (lambda d: _labelled(d/"l.jsonl", [1, 0, 2, 0, -1, 1]), "column 'label' is outside [0, 1] in 2 row(s) (0-based: 2, 4)"),
    "no positive label": (lambda d: _labelled(d/"l.jsonl", [0, 0, 0, 0]), "marks no row relevant"),
}

@pytest.mark.parametrize("case", list(JOB_DATA))
def test_bad_job_data_is_refused_and_the_previous_run_is_kept(case, finished, tmp_path, tiny_bert, tiny_embedder):
    runs, before = finished
    make, message = JOB_DATA[case]
    source = make(tmp_path)
    with pytest.raises(DataError) as err:
        run_pipeline(source=source, run_dir=runs/"demo", embedder=tiny_embedder, base_model=tiny_bert)
    assert message in str(err.value) and str(source) in str(err.value)
    assert (runs/"demo"/"metrics.json").read_bytes() == before and sorted(p.name for p in runs.iterdir()) == ["demo"]

def test_a_test_source_that_shares_queries_with_training_is_refused(finished, tmp_path, tiny_bert, tiny_embedder):
    runs, before = finished
    path = _jsonl(tmp_path/"qa.jsonl", [{"query": f"question {i}", "answer": f"answer {i}"} for i in range(12)])
    with pytest.raises(DataError, match=r"source .*qa.jsonl and test_source .*qa.jsonl share \d+ quer"):
        run_pipeline(source=path, test_source=path, run_dir=runs/"demo", embedder=tiny_embedder, base_model=tiny_bert)
    assert (runs/"demo"/"metrics.json").read_bytes() == before

@pytest.mark.parametrize("stop", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_run_that_fails_midway_keeps_the_previous_run(stop, finished, monkeypatch, tiny_bert, tiny_embedder):
    "Training starts, then fails or is interrupted: the staging folder goes, the finished run stays as it was."
    from reranker_tune import pipeline
    runs, before = finished
    def broken(*args, **kwargs): raise stop
    monkeypatch.setattr(pipeline, "fine_tune", broken)
    with pytest.raises(type(stop)):
        run_pipeline(source=sample_pairs().to_pandas().head(30), run_dir=runs/"demo", embedder=tiny_embedder,
                     base_model=tiny_bert, epochs=1)
    assert (runs/"demo"/"metrics.json").read_bytes() == before and sorted(p.name for p in runs.iterdir()) == ["demo"]

CONTRADICTIONS = {
    "a pair labelled both 1 and 0": (lambda d: _jsonl(d/"l.jsonl", [{"query": "q", "document": "a", "label": 1},
                                                                  {"query": "q", "document": "b", "label": 0},
                                                                  {"query": "q", "document": "a", "label": 0}]),
                                     "both relevant (>= 0.5) and not in 2 row(s) (0-based: 0, 2)"),
    "a text both positive and negative": (lambda d: _jsonl(d/"c.jsonl", [{"query": "q", "positive": ["a"], "negative": ["b", "a"]},
                                                                       {"query": "r", "positive": ["c"], "negative": ["d"]}]),
                                          "column 'negative' holds a text that is also a positive of the row (e.g. 'a') in 1 row(s) (0-based: 0)"),
}

@pytest.mark.parametrize("case", list(CONTRADICTIONS))
def test_contradictory_labels_are_refused_by_the_job_and_nothing_is_written(case, tmp_path, tiny_bert, tiny_embedder):
    make, message = CONTRADICTIONS[case]
    (tmp_path/"in").mkdir()
    source = make(tmp_path/"in")
    with pytest.raises(DataError) as err:
        run_pipeline(source=source, run_dir=tmp_path/"runs"/"bad", embedder=tiny_embedder, base_model=tiny_bert)
    assert message in str(err.value) and str(source) in str(err.value)
    assert not (tmp_path/"runs").exists()
