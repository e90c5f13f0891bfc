"Evaluation metrics checked against independent implementations, bad input, and the real candidate lists."
import json, warnings
from math import comb
import numpy as np, scipy.stats, pytest
from sklearn.metrics import ndcg_score
from reranker_tune.evaluation import (per_query_metrics, eval_set_from_candidate_lists, with_all_positives,
                                      found_share, build_eval_set)
from reranker_tune.data import DataError

def _random_graded_set(n_queries=20, n_docs=12, seed=0):
    "Samples with every judged document among the candidates, random integer gains and distinct random scores."
    rng = np.random.default_rng(seed)
    samples, scores = [], []
    for i in range(n_queries):
        gains = rng.integers(0, 4, n_docs); gains[rng.integers(n_docs)] = 3 # at least one relevant
        docs = [f"q{i}-doc{j}" for j in range(n_docs)]
        samples.append({"query": f"q{i}", "positive": [d for d, g in zip(docs, gains) if g >= 2], "documents": docs,
                        "gains": gains.tolist()})
        scores.append(rng.permutation(n_docs).astype(float))
    return samples, scores

def test_graded_ndcg_matches_sklearn():
    samples, scores = _random_graded_set()
    ours = per_query_metrics(samples, scores)["ndcg@10"].to_numpy()
    theirs = [ndcg_score([s["gains"]], [x], k=10) for s, x in zip(samples, scores)]
    np.testing.assert_allclose(ours, theirs, atol=1e-9)

def test_binary_ndcg_matches_sklearn_with_all_positives_present():
    samples, scores = _random_graded_set(seed=1)
    binary = [{k: v for k, v in s.items() if k != "gains"} for s in samples]
    ours = per_query_metrics(binary, scores)["ndcg@10"].to_numpy()
    theirs = [ndcg_score([[int(d in s["positive"]) for d in s["documents"]]], [x], k=10) for s, x in zip(binary, scores)]
    np.testing.assert_allclose(ours, theirs, atol=1e-9)

def test_mrr_and_map_by_hand():
    # positives at ranks 2 and 4 of 5, a third positive never retrieved
    s = [{"query": "q", "positive": ["a", "b", "zz"], "documents": ["x", "a", "y", "b", "z"]}]
    m = per_query_metrics(s).loc["0"]
    assert m["mrr@10"] == pytest.approx(1/2)
    assert m["map"] == pytest.approx((1/2 + 2/4)/3)
    # reversed order: positives at ranks 2 and 4 again (b then a): the same numbers
    m2 = per_query_metrics(s, [[1, 2, 3, 4, 5]]).loc["0"]
    assert m2["map"] == pytest.approx((1/2 + 2/4)/3)

def test_ties_are_broken_by_base_order():
    s = [{"query": "q", "positive": ["b"], "documents": ["a", "b", "c"]}]
    assert per_query_metrics(s, [[0.0, 0.0, 0.0]]).loc["0", "mrr@10"] == pytest.approx(0.5)
    assert per_query_metrics(s, [[0.0, 1.0, 1.0]]).loc["0", "mrr@10"] == pytest.approx(1.0)

def test_bad_input_is_named():
    s = [{"query": "q", "positive": ["b"], "documents": ["a", "b", "c"]}]
    with pytest.raises(ValueError, match="Sample 0: 2 scores for 3 documents"): per_query_metrics(s, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="NaN"): per_query_metrics(s, [[1.0, np.nan, 0.0]])
    with pytest.raises(ValueError, match="no positive"): per_query_metrics([{"query": "q", "positive": [], "documents": ["a"]}])
    lists = {"query": ["q1", "q2"], "positive": [["a"], ["c"]], "negative": [["x"], ["y"]],
             "positive_grades": [[4], [5]], "negative_grades": [[2], [1]]}
    with pytest.raises(DataError, match=r"rows \[1\]"): eval_set_from_candidate_lists(lists, grade_range=(1, 4))
    with pytest.raises(DataError, match="negative_grades"):
        eval_set_from_candidate_lists({**lists, "negative_grades": [[2, 1], [1]]}, grade_range=(1, 5))

def test_nothing_found_is_a_counted_warning(tiny_embedder):
    "Deterministic on any CPU: a document identical to the query is always the top-1, so the positive is never found."
    import datasets
    from sentence_transformers import SentenceTransformer
    embedder = SentenceTransformer(tiny_embedder)
    pairs = datasets.Dataset.from_dict({"query": ["how deep to plant garlic"], "answer": ["two inches deep"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = build_eval_set(pairs, ["how deep to plant garlic"] + [f"filler {i}" for i in range(20)], embedder, top_k=1)
    assert s[0]["documents"] == ["how deep to plant garlic"] and found_share(s) == 0
    assert any("any of the 1 queries" in str(w.message) for w in caught)
    with warnings.catch_warnings(record=True) as caught:  # the positive alone in the corpus: found, no warning
        warnings.simplefilter("always")
        s = build_eval_set(pairs, [], embedder, top_k=1)
    assert found_share(s) == 1 and not any("queries" in str(w.message) for w in caught)

def test_all_positives_setting_only_adds_missed_positives():
    s = [{"query": "q", "positive": ["a", "b"], "documents": ["x", "a"], "retriever_scores": [0.9, 0.8]}]
    full = with_all_positives(s)
    assert full[0]["documents"] == ["x", "a", "b"]
    # base order: the missed positive sits after the retrieved ones (rank 3), not at the top
    assert per_query_metrics(full).loc["0", "map"] == pytest.approx((1/2 + 2/3)/2)
    assert per_query_metrics(s).loc["0", "map"] == pytest.approx((1/2)/2)

def test_liveqa_med_given_and_random_order(shared_data):
    path = shared_data/"liveqa_med"/"test.jsonl"
    given = eval_set_from_candidate_lists(path, grade_range=(1, 4), order="given")
    assert len(given) == 30 and sum(len(s["documents"]) for s in given) == 229
    # positives first: perfect MAP and MRR; graded NDCG < 1 only where a grade-3 positive precedes a grade-4 one
    m = per_query_metrics(given).mean()
    assert m["map"] == pytest.approx(1.0) and m["mrr@10"] == pytest.approx(1.0)
    assert 0.9 < m["ndcg@10"] <= 1.0
    # random order, averaged over seeded shuffles: the README's random figures (MAP 0.539, MRR 0.563, NDCG@10 0.751)
    runs = [per_query_metrics(eval_set_from_candidate_lists(path, grade_range=(1, 4), seed=k)).mean() for k in range(200)]
    mean = np.mean([r.to_numpy() for r in runs], axis=0)
    assert mean[2] == pytest.approx(0.539, abs=0.015)  # map
    # MRR: the README's 0.563 looks like a single draw; the exact expectation over shuffles is
    # sum_k P(first positive at rank k)/k, with P = C(n-k, r-1)/C(n, r) for r positives among n candidates
    rows = [json.loads(line) for line in open(path)]
    expected_mrr = np.mean([sum(comb(n - k, r - 1)/comb(n, r)/k for k in range(1, min(n, 10) + 1))
                            for r, n in ((len(x["positive"]), len(x["positive"]) + len(x["negative"])) for x in rows)])
    assert mean[1] == pytest.approx(expected_mrr, abs=0.01) # mrr@10
    assert mean[0] == pytest.approx(0.751, abs=0.015)  # graded ndcg@10

def test_trecqa_test_split(shared_data):
    s = eval_set_from_candidate_lists(shared_data/"trecqa"/"test.jsonl", order="given")
    assert len(s) == 68
    assert per_query_metrics(s).mean()["map"] == pytest.approx(1.0)
    runs = [per_query_metrics(eval_set_from_candidate_lists(shared_data/"trecqa"/"test.jsonl", seed=k)).mean()["map"] for k in range(50)]
    assert np.mean(runs) == pytest.approx(0.386, abs=0.02) # the README's random anchor

def _tiny_eval_set(n=6):
    from reranker_tune.data import sample_pairs
    pairs = sample_pairs().select(range(40))
    answers = list(pairs["answer"])
    return [{"query": q, "positive": [a], "documents": [a] + answers[i+1:i+5], "retriever_scores": [0.9, 0.8, 0.7, 0.6, 0.5]}
            for i, (q, a) in enumerate(zip(pairs["query"][:n], answers[:n]))]

def test_evaluator_in_the_trainer(tiny_bert, tmp_path):
    import datasets
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from reranker_tune.evaluation import RerankingEvaluator, rerank_scores
    model = CrossEncoder(tiny_bert, device="cpu")
    eval_set = _tiny_eval_set()
    evaluator = RerankingEvaluator(eval_set, name="dev")
    train = datasets.Dataset.from_dict({"query": [s["query"] for s in eval_set]*2,
                                        "document": [s["documents"][0] for s in eval_set] + [s["documents"][1] for s in eval_set],
                                        "label": [1.0]*len(eval_set) + [0.0]*len(eval_set)})
    args = CrossEncoderTrainingArguments(str(tmp_path), max_steps=2, per_device_train_batch_size=4, eval_strategy="steps",
                                         eval_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                                         metric_for_best_model="eval_dev_ndcg@10", logging_steps=1)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train, loss=BinaryCrossEntropyLoss(model), evaluator=evaluator)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "eval_dev_ndcg@10" in h]
    assert len(logged) == 2 and {"eval_dev_mrr@10", "eval_dev_map"} <= set(logged[-1])
    assert evaluator.primary_metric == "dev_ndcg@10"
    # the same numbers as the full evaluation's code path
    final = per_query_metrics(eval_set, rerank_scores(model, eval_set, show_progress_bar=False)).mean()
    assert evaluator(model)["dev_ndcg@10"] == pytest.approx(final["ndcg@10"])

def test_uncertainty_is_seeded_and_sensible():
    from reranker_tune.evaluation import bootstrap_ci, paired_comparison
    rng = np.random.default_rng(3)
    x = rng.uniform(size=50)
    low, high = bootstrap_ci(x)
    assert low < x.mean() < high and bootstrap_ci(x) == (low, high)
    # a much wider interval at 99.9% than at 50%
    assert np.subtract(*bootstrap_ci(x, 0.999)[::-1]) > np.subtract(*bootstrap_ci(x, 0.5)[::-1])
    assert paired_comparison(x + 0.05, x)["verdict"] == "win"
    assert paired_comparison(x, x + 0.05)["verdict"] == "regression"
    r = paired_comparison(x + rng.normal(0, 0.2, 50), x)
    assert r["verdict"] == "within noise" and r["p_value"] > 0.05

def test_comparison_table_and_files(tiny_bert, tmp_path):
    from sentence_transformers import CrossEncoder
    from reranker_tune.evaluation import (save_comparison, compare_rerankers, comparison_result, count_parameters,
                                          paired_comparison, verdict_line, RETRIEVER, CROSS_ENCODER, FUSION)
    eval_set = _tiny_eval_set()
    eval_set[0] = {**eval_set[0], "documents": eval_set[0]["documents"][1:], "retriever_scores": [0.8, 0.7, 0.6, 0.5]} # one miss
    model, again = CrossEncoder(tiny_bert, device="cpu"), CrossEncoder(tiny_bert, device="cpu")
    table, per_query = compare_rerankers(eval_set, {"tiny again": again, CROSS_ENCODER: model},
                                         fusion={CROSS_ENCODER: 0.5}, per_query=True)
    assert list(table.index) == [RETRIEVER, "tiny again", CROSS_ENCODER, FUSION]
    # same model loaded twice: identical metrics
    assert table.loc["tiny again", "ndcg@10"] == pytest.approx(table.loc[CROSS_ENCODER, "ndcg@10"], abs=1e-6)
    paired = paired_comparison(per_query[CROSS_ENCODER]["ndcg@10"], per_query[RETRIEVER]["ndcg@10"])
    sizes = {RETRIEVER: None, CROSS_ENCODER: count_parameters(model)}
    result = comparison_result(table, per_query, sizes, CROSS_ENCODER, [verdict_line(CROSS_ENCODER, RETRIEVER, paired)])
    t = result["table"]
    assert list(t.columns[:5]) == ["queries", "parameters", "ndcg@10", "ndcg@10 low", "ndcg@10 high"]
    assert t.loc[CROSS_ENCODER, "parameters"] == sum(p.numel() for p in model.parameters())
    assert t["parameters"].isna()[RETRIEVER]
    assert (t["ndcg@10 low"] <= t["ndcg@10"] + 1e-12).all() and (t["ndcg@10"] <= t["ndcg@10 high"] + 1e-12).all()
    files = save_comparison(result, tmp_path)
    assert all(f.stat().st_size > 0 for f in files)
    assert f"{CROSS_ENCODER} vs {RETRIEVER}" in (tmp_path/"comparison.md").read_text()

def _train_briefly(model, queries, answers, steps=60):
    "A few fp32 steps of BCE on right and wrong answers, so that the tiny model's scores spread out."
    import torch
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.model.parameters(), lr=3e-3)
    model.model.train()
    for step in range(steps):
        i = [(step*8 + k) % len(queries) for k in range(8)]
        batch = [(queries[j], answers[j]) for j in i] + [(queries[j], answers[(j + 3) % len(answers)]) for j in i]
        features = model.tokenizer(*zip(*batch), padding=True, truncation=True, return_tensors="pt")
        logits = model.model(**features).logits.squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([1.0]*8 + [0.0]*8))
        loss.backward(); optimizer.step(); optimizer.zero_grad()
    model.model.eval()

def test_bf16_scoring_keeps_the_fp32_order(tiny_bert):
    "Scoring in bf16 (autocast) moves each score a little: nearly the same order per query, the same NDCG@10."
    from sentence_transformers import CrossEncoder
    from reranker_tune.data import sample_pairs
    from reranker_tune.evaluation import rerank_scores
    pairs = sample_pairs().select(range(120))
    queries, answers = list(pairs["query"]), list(pairs["answer"])
    eval_set = [{"query": q, "positive": [answers[i]], "documents": [answers[(i + k*7) % 120] for k in range(12)]}
                for i, q in enumerate(queries[:60])]
    model = CrossEncoder(tiny_bert, device="cpu")
    _train_briefly(model, queries, answers) # a random head scores every pair alike: nothing to order
    full = rerank_scores(model, eval_set, show_progress_bar=False, precision="fp32")
    half = rerank_scores(model, eval_set, show_progress_bar=False, precision="bf16")
    spread = np.mean([np.std(s) for s in full])
    assert spread > 0 and max(np.abs(f - h).max() for f, h in zip(full, half)) < spread # close, not equal
    assert any(not np.array_equal(f, h) for f, h in zip(full, half)) # bf16 really ran
    taus = [scipy.stats.kendalltau(f, h).statistic for f, h in zip(full, half)]
    ndcg = lambda scores: per_query_metrics(eval_set, scores)["ndcg@10"].mean()
    print(f"Kendall tau {np.mean(taus):.3f}, NDCG@10 fp32 {ndcg(full):.4f} bf16 {ndcg(half):.4f}")
    assert np.mean(taus) > 0.9 and abs(ndcg(full) - ndcg(half)) < 0.02
