"The mining stage on tiny fixtures (a random StaticEmbedding), and on a MedQuAD slice when ../shared/data exists."
import warnings
from pathlib import Path
import datasets, pandas as pd, pytest
from sentence_transformers import SentenceTransformer
from reranker_tune.data import sample_pairs, split_by_query, load_source, to_pairs, as_pairs
from reranker_tune.mining import (MINING_PRESETS, mining_preset, candidate_pool, cache_key, model_fingerprint,
                                  save_atomic, mined_triples, shortfall, mine_negatives, similarity_table, similarity_stats,
                                  plot_similarities, spot_check, bm25_eval_set)

@pytest.fixture(scope="module")
def embedder(tiny_embedder): return SentenceTransformer(tiny_embedder, device="cpu")

@pytest.fixture(scope="module")
def train(): return split_by_query(sample_pairs().select(range(60)), eval_size=0.2, seed=1)["train"]

def _caught(f):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = f()
    return out, [str(w.message) for w in caught]

# --- presets ---------------------------------------------------------------------------------------------
def test_presets_reproduce_the_seed_recipe_and_the_evaluation_set():
    assert mining_preset("seed") == dict(num_negatives=5, range_min=0, range_max=100, sampling_strategy="top", output_format="labeled-pair")
    assert mining_preset("evaluation") == dict(num_negatives=30, include_positives=True, output_format="n-tuple")
    assert {p["output_format"] for p in MINING_PRESETS.values()} == {"labeled-pair", "triplet", "n-tuple", "labeled-list"}
    with pytest.raises(ValueError, match="Unknown preset"): mining_preset("nope")

# --- candidates and bad input --------------------------------------------------------------------------------
def test_candidate_pool_excludes_and_counts():
    pairs = as_pairs([("q1", "a1"), ("q2", "a2")])
    assert candidate_pool(pairs) is None
    pool, msgs = _caught(lambda: candidate_pool(pairs, ["a1", "e", "x"], exclude=["e", "a2"]))
    assert pool == ["a1", "x", "a2"]
    assert any(m.startswith("1 of 2 positives are not in the corpus") for m in msgs)
    assert any(m.startswith("1 excluded texts are also training positives") for m in msgs)
    _, msgs = _caught(lambda: candidate_pool(pairs, ["a1", "a2"]))
    assert len(msgs) == 1 and "without exclude=" in msgs[0]
    assert not _caught(lambda: candidate_pool(pairs, ["a1", "a2"], exclude=[]))[1]

def test_empty_corpus_is_a_clear_error(train, embedder):
    with pytest.raises(ValueError, match="corpus is empty"): mine_negatives(train, embedder, corpus=[])

def test_empty_pairs_is_a_clear_error(embedder):
    with pytest.raises(ValueError, match="no rows"): mine_negatives(datasets.Dataset.from_dict({"query": [], "answer": []}), embedder)

def test_positive_missing_from_corpus_is_a_counted_warning(train, embedder):
    corpus = list(train["answer"])[5:] + ["an unrelated text about tax returns"]
    mined, msgs = _caught(lambda: mine_negatives(train, embedder, corpus=corpus, exclude=[], num_negatives=2))
    assert any(m.startswith("5 of ") and "not in the corpus" in m for m in msgs)
    assert sum(mined["label"]) == len(train) # the five queries still got their positive

def test_fewer_candidates_than_requested_is_a_clear_error(train, embedder):
    with pytest.raises(ValueError, match="Cannot mine 5\\+2 negatives per query from 4 candidate documents"):
        mine_negatives(train.select(range(4)), embedder, num_negatives=5, random_negatives=2)

def test_short_queries_are_counted_with_the_knob(train, embedder):
    mined, msgs = _caught(lambda: mine_negatives(train, embedder, num_negatives=3, range_max=10, absolute_margin=1.5))
    short = [m for m in msgs if "fewer than 3 negatives" in m]
    assert len(short) == 1 and "lower absolute_margin" in short[0] and "raise range_max" in short[0]
    assert shortfall(train, mined, 3)["queries_short"] == len(set(train["query"]))

# --- mining -----------------------------------------------------------------------------------------------------
def test_seed_defaults_give_labelled_pairs(train, embedder):
    mined, msgs = _caught(lambda: mine_negatives(train, embedder))
    assert mined.column_names == ["query", "answer", "label"]
    assert sum(mined["label"]) == len(train) and len(mined) == len(train) * 6
    assert not [m for m in msgs if "fewer than" in m]

@pytest.mark.parametrize("fmt,columns", [("triplet", ["query", "answer", "negative"]),
                                         ("n-tuple", ["query", "answer", "negative_1", "negative_2", "negative_3"]),
                                         ("labeled-list", ["query", "documents", "labels"])])
def test_hard_plus_random_in_every_format(train, embedder, fmt, columns):
    mined = mine_negatives(train, embedder, num_negatives=2, random_negatives=1, random_from=10, range_max=40, output_format=fmt)
    assert mined.column_names == columns
    triples = mined_triples(mined)
    assert (triples.groupby("query").size() == 3).all() and len(set(triples["query"])) == len(train)
    assert not (triples["positive"] == triples["negative"]).any()

def test_exclude_keeps_eval_positives_out(embedder):
    parts = split_by_query(sample_pairs().select(range(60)), eval_size=0.3, seed=2)
    mined = mine_negatives(parts["train"], embedder, corpus=sample_pairs()["answer"][:60], exclude=parts["eval"]["answer"], num_negatives=5)
    leaked = set(parts["eval"]["answer"]) - set(parts["train"]["answer"])
    assert leaked and not set(mined["answer"]) & leaked

def test_range_min_skips_the_hardest(train, embedder):
    top = mined_triples(mine_negatives(train, embedder, num_negatives=1, output_format="triplet"))
    skipped = mined_triples(mine_negatives(train, embedder, num_negatives=1, range_min=1, output_format="triplet"))
    assert (top.set_index("query")["negative"] != skipped.set_index("query")["negative"]).all()

def test_cross_encoder_rescoring_is_passed_through(train, embedder, tiny_bert):
    "The cross-encoder, not the embedder, picks among the candidates: longest-first and shortest-first scorers pick apart."
    # sentence-transformers 6.2 rescores only with a margin, max_score or min_score; without one it ignored the
    # cross-encoder silently (this test passed then), so mine_negatives now refuses that call.
    import torch
    from sentence_transformers import CrossEncoder
    class ByLength(CrossEncoder):
        sign = 1
        def predict(self, pairs, convert_to_tensor=False, **kw):
            scores = torch.tensor([self.sign*float(len(d)) for _, d in pairs])
            return scores if convert_to_tensor else scores.numpy()
    longest, shortest = ByLength(tiny_bert, device="cpu"), ByLength(tiny_bert, device="cpu")
    shortest.sign = -1
    with pytest.raises(ValueError, match="rescores candidates only with absolute_margin"):  # ignored otherwise
        mine_negatives(train.select(range(10)), embedder, num_negatives=2, range_max=8, cross_encoder=longest)
    def mined(scorer):  # max_score far above every score: nothing dropped, but the cross-encoder rescoring runs
        rows = mine_negatives(train.select(range(10)), embedder, num_negatives=2, range_max=8, cross_encoder=scorer,
                              max_score=1e9, output_format="triplet")
        return rows, {q: [len(n) for n, q2 in zip(rows["negative"], rows["query"]) if q2 == q] for q in rows["query"]}
    rows, long_picks = mined(longest)
    _, short_picks = mined(shortest)
    assert len(rows) == 20 and long_picks.keys() == short_picks.keys()
    assert all(min(long_picks[q]) >= max(short_picks[q]) for q in long_picks), [(long_picks[q], short_picks[q]) for q in long_picks]
    assert long_picks != short_picks, "without the cross-encoder both runs would pick the embedder's top 2"

def test_evaluation_preset_keeps_positives_in_ranking_order(train, embedder):
    mined = mine_negatives(train, embedder, **mining_preset("evaluation", num_negatives=10))
    assert mined.column_names == ["query", "answer"] + [f"negative_{i}" for i in range(1, 11)] and len(mined) == len(train)
    hits = [r["answer"] in [r[f"negative_{i}"] for i in range(1, 11)] for r in mined] # the positive may sit in its rank
    assert 0 < sum(hits) <= len(train)

# --- caching ---------------------------------------------------------------------------------------------------
def test_cache_key_is_canonical_and_sensitive():
    assert cache_key({"q": ["a"]}, {"x": 1, "y": None}) == cache_key({"q": ["a"]}, {"y": None, "x": 1})
    assert cache_key({"q": ["a"]}, {"x": 1}) != cache_key({"q": ["a"]}, {"x": 2})
    assert cache_key({"q": ["ab"]}, {}) != cache_key({"q": ["a", "b"]}, {})

def test_model_fingerprint_changes_with_weights(tiny_embedder):
    import torch
    a, b = SentenceTransformer(tiny_embedder, device="cpu"), SentenceTransformer(tiny_embedder, device="cpu")
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad(): next(b.parameters())[0, 0] += 1
    assert model_fingerprint(a) != model_fingerprint(b) and model_fingerprint(None) == "none"

def test_save_atomic_leaves_only_the_final_folder(tmp_path):
    save_atomic(datasets.Dataset.from_dict({"x": [1]}), tmp_path/"k")
    save_atomic(datasets.Dataset.from_dict({"x": [2]}), tmp_path/"k") # a second writer does not break the first
    assert [p.name for p in tmp_path.iterdir()] == ["k"] and datasets.load_from_disk(str(tmp_path/"k"))["x"] == [1]

def test_second_run_loads_the_cache(train, embedder, tmp_path, monkeypatch):
    first = mine_negatives(train, embedder, random_negatives=1, cache_folder=tmp_path)
    import reranker_tune.mining as mining
    monkeypatch.setattr(mining, "mine_hard_negatives", lambda *a, **k: pytest.fail("mined again"))
    assert mine_negatives(train, embedder, random_negatives=1, cache_folder=tmp_path).to_list() == first.to_list()
    with pytest.raises(pytest.fail.Exception): mine_negatives(train, embedder, random_negatives=2, cache_folder=tmp_path)
    assert len(list((tmp_path/"mined").iterdir())) == 1 and len(list((tmp_path/"embeddings").iterdir())) == 1

# --- diagnostics -----------------------------------------------------------------------------------------------------
def test_diagnostics_on_every_format(train, embedder, capsys):
    mined = mine_negatives(train, embedder, num_negatives=2, output_format="labeled-list")
    table = similarity_table(mined, embedder)
    assert len(table) == 2 * len(train) and table["difference"].notna().all()
    stats = similarity_stats(table)
    assert list(stats.columns) == ["positive_score", "negative_score", "difference"] and stats.loc["count"].eq(len(table)).all()
    assert len(plot_similarities(table, bins=10).axes[0].patches) == 20
    rows = spot_check(mined, k=3)
    assert len(rows) == 3 and capsys.readouterr().out.count("Q: ") == 3

# --- BM25 --------------------------------------------------------------------------------------------------------------
def test_bm25_eval_set_has_the_evaluation_format():
    pairs = sample_pairs().select(range(40))
    records = bm25_eval_set(pairs.select(range(10)), pairs["answer"], top_k=5)
    assert len(records) == 10 and set(records[0]) == {"query", "positive", "documents", "retriever_scores"}
    assert all(len(r["documents"]) == 5 and r["retriever_scores"] == sorted(r["retriever_scores"], reverse=True) for r in records)
    assert sum(any(d in r["positive"] for d in r["documents"]) for r in records) >= 5

# --- real data ----------------------------------------------------------------------------------------------------------
def test_medquad_slice(shared_data, embedder):
    pairs = to_pairs(load_source(shared_data/"medquad"/"train.jsonl.gz", extra_columns="drop")).select(range(300))
    parts = split_by_query(pairs, eval_size=0.2, seed=12)
    mined = mine_negatives(parts["train"], embedder, corpus=pairs["answer"], exclude=parts["eval"]["answer"], num_negatives=3, random_negatives=1)
    leaked = set(parts["eval"]["answer"]) - set(parts["train"]["answer"])
    assert not set(mined["answer"]) & leaked
    assert sum(mined["label"]) == len(parts["train"])
    assert shortfall(parts["train"], mined, 4)["share_short"] < 0.05
