"The data stage on the real datasets beside the project (skipped when ../shared/data is absent)."
from reranker_tune.data import load_source, to_pairs, split_by_query, shape_of
from reranker_tune.pipeline import run_pipeline

def test_medquad_loads_as_candidate_lists_and_gives_pairs(shared_data):
    ds = load_source(shared_data/"medquad"/"train.jsonl.gz", extra_columns="drop")
    assert shape_of(ds) == "candidate_lists" and len(ds) == 13916
    pairs = to_pairs(ds)
    assert len(pairs) == 15068
    parts = split_by_query(pairs, eval_size=1000, seed=12)
    assert len(set(parts["eval"]["query"])) == 1000
    assert not set(parts["train"]["query"]) & set(parts["eval"]["query"])

def test_liveqa_keeps_its_grades(shared_data):
    ds = load_source(shared_data/"liveqa_med"/"test.jsonl", extra_columns="drop")
    assert ds.column_names == ["query", "positive", "negative", "positive_grades", "negative_grades"]
    assert len(ds) == 30 and all(len(p) == len(g) for p, g in zip(ds["positive"], ds["positive_grades"]))

def test_trecqa_dev_is_clean(shared_data):
    ds = load_source(shared_data/"trecqa"/"dev.jsonl", extra_columns="drop")
    assert len(ds) == 65 and all(len(n) > 0 for n in ds["negative"])

def test_pipeline_on_a_medquad_slice_with_tiny_models(shared_data, tmp_path, tiny_bert, tiny_embedder):
    result = run_pipeline(source=shared_data/"medquad"/"train.jsonl.gz", run_dir=tmp_path/"medquad", max_queries=50,
                          embedder=tiny_embedder, base_model=tiny_bert, epochs=1, top_k=10)
    assert result["table"].loc["retriever", "queries"] == 10
    assert (result["run_dir"]/"model"/"config.json").exists()
