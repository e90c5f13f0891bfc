"Contradictory labels are refused at load time with the file, the column and the rows named; exact duplicates are dropped."
import json, warnings
import pytest
from reranker_tune.data import DataError, load_source

def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path

def test_a_pair_labelled_relevant_and_not_is_refused_with_rows_named(tmp_path):
    path = tmp_path/"qrels.csv"
    path.write_text("query,document,label\nq1,a,1\nq1,b,0\nq2,a,0\nq1,a,0\nq1,b,0.2\n")
    with pytest.raises(DataError) as err: load_source(path)
    assert str(err.value).startswith(f"{path}: column 'label' labels the same (query, document) both relevant (>= 0.5) "
                                     "and not in 2 row(s) (0-based: 0, 3)."), "q1/b (0 and 0.2) agree; q2/a is another query"

def test_graded_labels_on_one_side_of_the_threshold_are_not_a_contradiction():
    ds = load_source({"query": ["q", "q", "q"], "document": ["a", "a", "b"], "label": [1.0, 0.6, 0.0]})
    assert ds["label"] == [1.0, 0.6, 0.0]

def test_a_text_both_positive_and_negative_is_refused_with_rows_named(tmp_path):
    path = _jsonl(tmp_path/"lists.jsonl", [{"query": "q1", "positive": ["a"], "negative": ["x"]},
                                           {"query": "q2", "positive": ["b", "c"], "negative": ["c", "y"]},
                                           {"query": "q3", "positive": ["d"], "negative": ["d"]}])
    with pytest.raises(DataError) as err: load_source(path)
    assert str(err.value).startswith(f"{path}: column 'negative' holds a text that is also a positive of the row "
                                     "(e.g. 'c') in 2 row(s) (0-based: 1, 2).")

def test_exact_duplicates_are_still_dropped_with_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_source({"query": ["q", "q", "q"], "document": ["a", "a", "b"], "label": [1, 1, 0]})
    assert len(ds) == 2 and any("dropped 1 exact duplicate row(s)" in str(w.message) for w in caught)
