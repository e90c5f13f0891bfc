"Pair classification and similarity scores (shapes, errors, a few training steps, sentence-transformers' evaluators) and NanoBEIR offline."
import json, random, time
import pandas as pd, pytest, datasets, yaml
from reranker_tune.data import DataError, load_source, shape_of, class_names_of, to_pairs
from reranker_tune.losses import check_dataset_for_loss
from reranker_tune.training import load_reranker, fine_tune
from reranker_tune.evaluation import (pair_task_evaluator, evaluate_pair_task, nanobeir_evaluator, nanobeir_table,
                                      NanoBEIRUnavailable)

# --- shapes -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("columns,shape", [
    (["sentence1", "sentence2", "label"], "classified_pairs"),
    (["premise", "hypothesis", "label"], "classified_pairs"),
    (["premise", "hypothesis", "gold_label"], "classified_pairs"),
    (["question1", "question2", "labels"], "classified_pairs"),
    (["sentence1", "sentence2", "score"], "scored_pairs"),
    (["text1", "text2", "similarity"], "scored_pairs"),
    (["question", "passage", "score"], "labelled_pairs"),  # beside a query, a score is a relevance label
    (["query", "answer"], "pairs"),
])
def test_shape_follows_the_column_names(columns, shape):
    values = {"label": [0, 1, 2], "labels": [0, 1, 1], "gold_label": ["entailment", "neutral", "contradiction"],
              "score": [0.1, 0.5, 0.9], "similarity": [0.1, 0.5, 0.9]}
    rows = {c: values.get(c, [f"{c} text {i}" for i in range(3)]) for c in columns}
    assert shape_of(load_source(rows)) == shape

def test_label_and_score_beside_two_sentences_is_ambiguous():
    rows = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0, 1], "score": [0.2, 0.8]}
    with pytest.raises(DataError, match=r"fit more than one shape \(classified_pairs, scored_pairs\)"): load_source(rows)

def test_class_names_from_a_csv_are_mapped_and_recorded(tmp_path):
    path = tmp_path/"nli.csv"
    path.write_text("premise,hypothesis,label\nA man sings.,Someone sings.,entailment\nA man sings.,Nobody sings.,contradiction\n"
                    "A dog runs.,An animal moves.,entailment\nA dog runs.,The dog is brown.,neutral\n")
    ds = load_source(path, class_names=["entailment", "neutral", "contradiction"])
    assert ds.column_names == ["sentence1", "sentence2", "label"] and ds["label"] == [0, 2, 0, 1]
    assert class_names_of(ds) == ["entailment", "neutral", "contradiction"]
    assert class_names_of(ds.select([0, 1])) == ["entailment", "neutral", "contradiction"], "the mapping survives a selection"
    assert class_names_of(load_source(path)) == ["contradiction", "entailment", "neutral"], "without class_names: sorted"
    (tmp_path/"ids.csv").write_text("sentence1,sentence2,label\na,b,0\nc,d,2\ne,f,1\n")  # ids as CSV text
    assert load_source(tmp_path/"ids.csv")["label"] == [0, 2, 1]

def test_classified_and_scored_pairs_are_not_question_answer_pairs():
    with pytest.raises(DataError, match="train on them directly"): to_pairs(load_source({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [0, 1]}))
    with pytest.raises(DataError, match="RerankingEvaluator"): pair_task_evaluator(load_source({"query": ["q"], "answer": ["a"]}))

# --- bad input --------------------------------------------------------------------------------------------------

def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path

def _pairs(labels, key="label"): return [{"sentence1": f"first {i}", "sentence2": f"second {i}", key: v} for i, v in enumerate(labels)]

BAD = {
    "mixed ids and names": (lambda d: _jsonl(d/"nli.jsonl", _pairs(["entailment", "neutral", 2, "neutral"])), {},
                            "column 'label' mixes class ids and names: names in 3 rows, ids in 1 row(s) (0-based: 2)"),
    "mixed in a CSV": (lambda d: (d/"nli.csv").write_text("sentence1,sentence2,label\na,b,0\nc,d,neutral\ne,f,1\n") and d/"nli.csv", {},
                       "mixes class ids and names: ids in 2 rows, names in 1 row(s) (0-based: 1)"),
    "fractional label": (lambda d: _jsonl(d/"sts.jsonl", _pairs([0.2, 1.0, 0.75])), {},
                         "column 'label' holds a fractional number, not a class (e.g. 0.2) in 2 row(s) (0-based: 0, 2)"),
    "missing label": (lambda d: _jsonl(d/"nli.jsonl", _pairs([0, None, 1])), {}, "column 'label' is missing (None, NaN or empty) in 1 row(s) (0-based: 1)"),
    "unknown class name": (lambda d: _jsonl(d/"nli.jsonl", _pairs(["yes", "no", "maybe"])), {"class_names": ["no", "yes"]},
                           "column 'label' is not one of class_names ['no', 'yes'] (e.g. 'maybe') in 1 row(s) (0-based: 2)"),
    "id beyond class_names": (lambda d: _jsonl(d/"nli.jsonl", _pairs([0, 1, 3])), {"class_names": ["a", "b", "c"]},
                              "column 'label' is not a class id 0..2 (e.g. 3) in 1 row(s) (0-based: 2)"),
    "one class": (lambda d: _jsonl(d/"nli.jsonl", _pairs(["same", "same"])), {}, "holds one class only ('same')"),
    "score out of range": (lambda d: _jsonl(d/"sts.jsonl", _pairs([0.5, 4.5, -0.1, 1.0], "score")), {},
                           "column 'score' is outside the stated range [0.0, 1.0] (e.g. 4.5) in 2 row(s) (0-based: 1, 2)"),
    "score out of a stated range": (lambda d: _jsonl(d/"sts.jsonl", _pairs([0.5, 5.5], "score")), {"score_range": (0, 5)},
                                    "outside the stated range [0, 5] (e.g. 5.5) in 1 row(s) (0-based: 1)"),
    "score not a number": (lambda d: _jsonl(d/"sts.jsonl", _pairs([0.5, "high"], "score")), {}, "column 'score' is not a number (e.g. 'high') in 1 row(s)"),
    "empty sentence": (lambda d: _jsonl(d/"sts.jsonl", [{"sentence1": "a", "sentence2": " ", "score": 0.5}]), {},
                       "column 'sentence2' is empty, whitespace-only or not text in 1 row(s) (0-based: 0)"),
}

@pytest.mark.parametrize("case", list(BAD))
def test_bad_pair_data_names_file_column_and_rows(case, tmp_path):
    make, options, message = BAD[case]
    path = make(tmp_path)
    with pytest.raises(DataError) as err: load_source(path, **options)
    assert message in str(err.value)
    assert str(path) in str(err.value), "the error names the file"

def test_fractional_label_error_says_how_to_load_scores(tmp_path):
    path = _jsonl(tmp_path/"sts.jsonl", _pairs([0.2, 0.9]))
    with pytest.raises(DataError, match=r"column_mapping=\{'label': 'score'\}"): load_source(path)
    assert shape_of(load_source(path, column_mapping={"label": "score"})) == "scored_pairs"

def test_a_classifier_needs_an_output_per_class():
    ds = load_source({"sentence1": ["a", "b", "c"], "sentence2": ["d", "e", "f"], "label": [0, 1, 2]})
    check_dataset_for_loss(ds, "CrossEntropyLoss", model_num_labels=3)
    with pytest.raises(DataError, match="num_labels >= 2"): check_dataset_for_loss(ds, "CrossEntropyLoss", model_num_labels=1)
    with pytest.raises(DataError, match=r"column 'label' is a class the model cannot output \(num_labels=2: ids 0..1\) in 1 row\(s\) \(0-based: 2\)"):
        check_dataset_for_loss(ds, "CrossEntropyLoss", model_num_labels=2)

# --- a few training steps, sentence-transformers' evaluators ------------------------------------------------------

KEYWORDS = ["water", "prune", "soil"]  # words of the tiny tokenizer's vocabulary (trained on the bundled sample)

def keyword_pairs(n: int, seed: int, task: str) -> datasets.Dataset:
    "Synthetic pairs whose class (or score) is the keyword of the second text."
    rng, rows = random.Random(seed), []
    for i in range(n):
        k = rng.randrange(3)
        rows.append({"sentence1": f"question {i} about the garden", "sentence2": f"you should {KEYWORDS[k]} it",
                     **({"label": KEYWORDS[k]} if task == "classified_pairs" else {"score": k/2})})
    return load_source(pd.DataFrame(rows), class_names=KEYWORDS)

def _fine_tune(model, train, loss, evaluator, out, epochs=1, learning_rate=1e-3):
    "Training that evaluates (and checkpoints on the evaluator's primary metric): the path a real run takes."
    before = [p.detach().clone() for p in model.parameters()]
    fine_tune(model, train, loss, out, evaluator=evaluator, patience=None, epochs=epochs, batch_size=16,
              learning_rate=learning_rate, warmup=0.0, eval_steps=0.25, disable_tqdm=True, report_to="none",
              logging_steps=100)
    return max(float((p.detach() - b).abs().max()) for p, b in zip(model.parameters(), before))

# The keyword decides the class (or score). In ~90 steps at a high learning rate a tiny BERT learns the score
# (measured: dev Pearson 0.99) and two of the three classes (dev accuracy 0.6). The tables must report what
# sentence-transformers' evaluator computes, which scikit-learn / scipy confirm on the model's own, non-constant
# predictions (constant ones made Pearson NaN, and the comparison depend on the CPU's rounding).

def test_three_class_cross_entropy_trains_and_is_evaluated(tiny_encoder, tmp_path):
    from sklearn.metrics import accuracy_score, f1_score
    train, held_out = keyword_pairs(48, 0, "classified_pairs"), keyword_pairs(30, 1, "classified_pairs")
    model = load_reranker(tiny_encoder, device="cpu", num_labels=3, loss="CrossEntropyLoss")
    evaluator = pair_task_evaluator(held_out, name="dev", num_labels=3)
    assert _fine_tune(model, train, "CrossEntropyLoss", evaluator, tmp_path/"out", epochs=30, learning_rate=3e-3) > 0
    table = evaluate_pair_task(held_out, {"trained": model})
    assert list(table.columns) == ["pairs", "accuracy", "macro-F1", "weighted-F1"] and table.loc["trained", "pairs"] == 30
    predicted = model.predict(list(zip(held_out["sentence1"], held_out["sentence2"])), show_progress_bar=False).argmax(1)
    assert len(set(predicted)) >= 2, f"the trained model's classes vary with the keyword: {predicted}"
    assert table.loc["trained", "accuracy"] == pytest.approx(accuracy_score(held_out["label"], predicted))
    assert table.loc["trained", "macro-F1"] == pytest.approx(f1_score(held_out["label"], predicted, average="macro"))

def test_sentence_transformers_classification_evaluator_alone_cannot_pick_a_checkpoint(tiny_encoder, tmp_path):
    "Why pair_task_evaluator sets the primary metric up front: the bare evaluator has none until it first runs."
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderClassificationEvaluator
    train, held_out = keyword_pairs(16, 0, "classified_pairs"), keyword_pairs(6, 1, "classified_pairs")
    bare = CrossEncoderClassificationEvaluator(list(zip(held_out["sentence1"], held_out["sentence2"])), held_out["label"], write_csv=False)
    model = load_reranker(tiny_encoder, device="cpu", num_labels=3, loss="CrossEntropyLoss")
    with pytest.raises(AttributeError, match="primary_metric"): _fine_tune(model, train, "CrossEntropyLoss", bare, tmp_path/"out")

def test_regression_with_mse_is_evaluated_by_correlation(tiny_bert, tmp_path):
    import numpy as np
    from scipy.stats import pearsonr, spearmanr
    train, held_out = keyword_pairs(48, 0, "scored_pairs"), keyword_pairs(30, 1, "scored_pairs")
    model = load_reranker(tiny_bert, device="cpu", loss="MSELoss")
    assert type(model.activation_fn).__name__ == "Identity"
    evaluator = pair_task_evaluator(held_out, name="dev")
    assert _fine_tune(model, train, "MSELoss", evaluator, tmp_path/"out", epochs=30, learning_rate=1e-2) > 0
    table = evaluate_pair_task(held_out, {"trained": model})
    assert list(table.columns) == ["pairs", "pearson", "spearman"]
    predicted = model.predict(list(zip(held_out["sentence1"], held_out["sentence2"])), show_progress_bar=False)
    assert np.std(predicted) > 0.05, f"the trained model's predictions vary with the keyword: {predicted}"
    assert pearsonr(held_out["score"], predicted)[0] > 0.8, "it learned the keyword's score"
    assert table.loc["trained", "pearson"] == pytest.approx(pearsonr(held_out["score"], predicted)[0])
    assert table.loc["trained", "spearman"] == pytest.approx(spearmanr(held_out["score"], predicted)[0])

def test_a_binary_classifier_with_one_output_gets_sentence_transformers_binary_metrics(tiny_bert):
    ds = load_source({"sentence1": ["a b", "c d", "e f", "g h"], "sentence2": ["water", "soil", "water", "soil"], "label": [1, 0, 1, 0]})
    evaluator = pair_task_evaluator(ds, num_labels=1)
    assert evaluator.primary_metric == "average_precision"
    table = evaluate_pair_task(ds, {"one output": load_reranker(tiny_bert, device="cpu")})
    assert {"accuracy", "f1", "precision", "recall", "average_precision"} <= set(table.columns)
    assert not any(c.endswith("threshold") for c in table.columns)

# --- NanoBEIR -------------------------------------------------------------------------------------------------------

def write_nanobeir_folder(folder, split="NanoSciFact"):
    "Two queries and five documents in the layout of sentence-transformers/NanoBEIR-en (parquet per subset, README configs)."
    tables = {"corpus": pd.DataFrame({"_id": ["d1", "d2", "d3", "d4", "d5"],
                                      "text": ["Water a snake plant every three weeks.", "Prune roses in late winter.",
                                               "Tomatoes need full sun.", "Aphids are small sap-sucking insects.", "Garlic is planted in autumn."]}),
              "queries": pd.DataFrame({"_id": ["q1", "q2"], "text": ["how often to water a snake plant", "when to prune roses"]}),
              "qrels": pd.DataFrame({"query-id": ["q1", "q2"], "corpus-id": ["d1", "d2"], "score": [1, 1]}),
              "bm25": pd.DataFrame({"query-id": ["q1", "q2"], "corpus-ids": [["d3", "d1", "d4"], ["d2", "d5", "d3"]]})}
    configs = []
    for subset, table in tables.items():
        (folder/subset).mkdir(parents=True)
        table.to_parquet(folder/subset/f"{split}-00000-of-00001.parquet", index=False)
        configs.append({"config_name": subset, "data_files": [{"split": split, "path": f"{subset}/{split}-*"}]})
    (folder/"README.md").write_text("---\n" + yaml.safe_dump({"configs": configs}, sort_keys=False) + "---\n\n# NanoBEIR stand-in\n")
    return folder

def test_nanobeir_without_a_folder_fails_fast_and_explains(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    for online in (False, True):
        with pytest.raises(NanoBEIRUnavailable) as err: nanobeir_evaluator(["msmarco"], online=online)
        message = str(err.value)
        assert "small retrieval benchmark" in message and "downloads from the Hugging Face Hub" in message
        assert "online=True" in message and "local_folder=" in message and "hf download sentence-transformers/NanoBEIR-en" in message
    assert "the Hub is switched off here" in message
    assert time.perf_counter() - started < 3

def test_nanobeir_runs_offline_from_a_local_folder(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path/"cache")
    folder = write_nanobeir_folder(tmp_path/"NanoBEIR-en")
    evaluator = nanobeir_evaluator(local_folder=folder)
    assert evaluator.dataset_names == ["scifact"]
    metrics = evaluator(load_reranker(tiny_bert, device="cpu"))
    table = nanobeir_table(metrics)
    assert list(table.index) == ["NanoSciFact", "mean"]
    assert list(table.columns) == ["base_ndcg@10", "ndcg@10", "base_mrr@10", "mrr@10", "base_map", "map"]
    assert table.loc["NanoSciFact", "base_mrr@10"] == pytest.approx((1/2 + 1)/2), "BM25 order: positive 2nd, then 1st"
    assert ((table >= 0) & (table <= 1)).all().all() and table.loc["mean", "ndcg@10"] == table.loc["NanoSciFact", "ndcg@10"]

def test_nanobeir_folder_that_lacks_a_dataset_or_the_layout_is_refused(tmp_path):
    folder = write_nanobeir_folder(tmp_path/"NanoBEIR-en")
    with pytest.raises(NanoBEIRUnavailable, match=r"lacks \['msmarco'\]"): nanobeir_evaluator(["msmarco"], local_folder=folder)
    (tmp_path/"empty").mkdir()
    with pytest.raises(NanoBEIRUnavailable, match="has no README.md"): nanobeir_evaluator(local_folder=tmp_path/"empty")
