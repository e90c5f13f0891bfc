"Serving: what a run ships, the rerank API, ONNX export and parity on the tiny cross-encoder, and the safety of what is saved and loaded."
import json, re, shutil, sys, warnings
from pathlib import Path
import numpy as np, pytest
from sentence_transformers import CrossEncoder
from reranker_tune import serving, export
from reranker_tune.serving import (rerank, Reranker, Ranked, load_model, cached_model, check_model_folder, ModelFolderError,
                                   OnnxNotInstalled)
from reranker_tune.export import export_onnx, quantize_onnx, onnx_parity, compare_backends, ParityError, FP32_TOLERANCE
from reranker_tune.serving import load_shipped_rule, served_metrics
from reranker_tune.core import write_folder_mark, FOLDER_MARK
from conftest import QUERY, DOCS, SYSTEM_OF, eval_samples, cosines # with the run-folder fixtures
from reranker_tune.run_folder import NORMALISATION
from reranker_tune.training import load_reranker, save_model
from reranker_tune.evaluation import (fuse_scores, rerank_scores, per_query_metrics, read_eval_set,
                                      RETRIEVER, CROSS_ENCODER, FUSION)

@pytest.fixture
def own_folder(model_folder, tmp_path) -> Path:
    "A private copy, for tests that write ONNX files into the folder."
    return Path(shutil.copytree(model_folder, tmp_path/"model"))

# --- the rerank API ---

def test_rerank_returns_the_best_first_as_ranked_rows(model_folder):
    hits = rerank(QUERY, DOCS, top_k=3, source=model_folder)
    assert [h.rank for h in hits] == [1, 2, 3] and all(isinstance(h, Ranked) for h in hits)
    expected = CrossEncoder(str(model_folder), device="cpu").rank(QUERY, DOCS, top_k=3)
    assert [h.id for h in hits] == [e["corpus_id"] for e in expected]
    np.testing.assert_allclose([h.score for h in hits], [e["score"] for e in expected], atol=1e-6)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    assert all(DOCS[h.id] == h.text for h in hits)

def test_a_dict_of_documents_gives_back_its_ids(model_folder):
    docs = {f"faq-{i}": d for i, d in enumerate(DOCS)}
    by_list = rerank(QUERY, DOCS, top_k=None, source=model_folder)
    by_dict = rerank(QUERY, docs, top_k=None, source=model_folder)
    assert [h.id for h in by_dict] == [f"faq-{h.id}" for h in by_list]
    assert [h.text for h in by_dict] == [h.text for h in by_list]

def test_top_k_none_or_larger_than_the_candidates_returns_them_all(model_folder):
    assert len(rerank(QUERY, DOCS, top_k=None, source=model_folder)) == len(DOCS)
    assert len(rerank(QUERY, DOCS, top_k=100, source=model_folder)) == len(DOCS)
    assert len(rerank(QUERY, DOCS[:1], top_k=1, source=model_folder)) == 1

@pytest.mark.parametrize("documents,top_k,error,message", [
    ([], 3, ValueError, "documents is empty"), ({}, 3, ValueError, "documents is empty"),
    (DOCS, 0, ValueError, "at least 1"), (DOCS, -2, ValueError, "at least 1"), (DOCS, "3", TypeError, "whole number"),
    ("a single text", 3, TypeError, "not a single string"), (["ok", 7], 3, TypeError, "not text at [1]")])
def test_bad_requests_fail_with_clear_errors(model_folder, documents, top_k, error, message):
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")): rerank(QUERY, documents, top_k=top_k, source=model_folder)

def test_an_empty_query_is_refused(model_folder):
    with pytest.raises(ValueError, match="non-empty string"): rerank("  ", DOCS, source=model_folder)

def test_a_missing_folder_or_one_that_is_not_a_model_is_named(tmp_path):
    with pytest.raises(ModelFolderError, match="no such run folder.*make demo"): rerank(QUERY, DOCS, source=tmp_path/"nope")
    (tmp_path/"notes").mkdir(); (tmp_path/"notes"/"readme.txt").write_text("hi")
    with pytest.raises(ModelFolderError, match="not a saved model"): Reranker(tmp_path/"notes")
    (tmp_path/"file.txt").write_text("x")
    with pytest.raises(ModelFolderError, match="a file, not a model folder"): load_model(tmp_path/"file.txt")

def test_the_model_is_loaded_once_and_again_when_replaced(model_folder, tmp_path):
    assert Reranker(model_folder).model is Reranker(model_folder).model
    folder = save_model(load_reranker(str(model_folder), device="cpu"), tmp_path/"m")
    first = cached_model(folder)
    save_model(load_reranker(str(model_folder), device="cpu"), folder) # trained again: a new folder under the same name
    assert cached_model(folder) is not first

def test_a_loaded_cross_encoder_is_used_as_it_is(model_folder):
    model = load_model(model_folder, device="cpu")
    assert Reranker(model).model is model
    assert [h.id for h in rerank(QUERY, DOCS, source=model)] == [h.id for h in rerank(QUERY, DOCS, source=model_folder)]

# --- ONNX ---

def test_onnx_export_of_the_tiny_cross_encoder_passes_parity(own_folder):
    files = export_onnx(own_folder)
    assert files["fp32"] == own_folder/"onnx"/"model.onnx" and files["fp32"].is_file()
    assert not [p for p in (own_folder/"onnx").iterdir() if p.name.startswith(".partial")]
    report = onnx_parity(own_folder, files["fp32"], eval_samples())
    assert report["passed"] and report["max_abs_diff"] <= FP32_TOLERANCE and report["same_order_up_to_ties"] == 1.0
    assert not report["quantized"] and "parity OK" in report["summary"]
    pairs = [(s["query"], d) for s in eval_samples() for d in s["documents"]] # plain pairs work too
    assert onnx_parity(own_folder, own_folder, pairs)["queries"] == 4
    onnx_hits = rerank(QUERY, DOCS, top_k=None, source=own_folder, onnx_file="onnx/model.onnx")
    assert [h.id for h in onnx_hits] == [h.id for h in rerank(QUERY, DOCS, top_k=None, source=own_folder)]

def test_int8_export_runs_and_reports_agreement_without_demanding_identity(own_folder):
    files = export_onnx(own_folder, quantize=True)
    assert files["int8"].name == "model_qint8_avx512_vnni.onnx" and files["int8"].stat().st_size < files["fp32"].stat().st_size
    report = onnx_parity(own_folder, files["int8"], eval_samples())
    assert report["quantized"] and not report["strict_order"] and report["tolerance"] == export.INT8_TOLERANCE
    assert report["passed"] and report["max_abs_diff"] <= export.INT8_TOLERANCE and "reported, not required" in report["summary"]
    assert quantize_onnx(own_folder, "avx2").name == "model_quint8_avx2.onnx"
    with pytest.raises(ValueError, match="config must be one of"): quantize_onnx(own_folder, "avx9000")

def test_parity_fails_loudly_when_the_export_is_another_model(own_folder, tiny_bert, tmp_path):
    flipped = load_reranker(tiny_bert, device="cpu")
    flipped[0].model.classifier.weight.data.mul_(-1) # the same model with its head reversed
    other = save_model(flipped, tmp_path/"other")
    export_onnx(other)
    with pytest.raises(ParityError, match="PARITY FAILED"): onnx_parity(own_folder, other/"onnx"/"model.onnx", eval_samples())
    report = onnx_parity(own_folder, other/"onnx", eval_samples(), raise_on_failure=False)
    assert not report["passed"] and not report["scores_ok"]

def test_an_export_that_fails_its_check_is_not_kept(own_folder, monkeypatch):
    def failing(*a, **k): raise ParityError("scores differ")
    monkeypatch.setattr(export, "onnx_parity", failing)
    with pytest.raises(ParityError): export_onnx(own_folder)
    assert not (own_folder/"onnx"/"model.onnx").exists()

def test_an_onnx_file_that_was_never_exported_is_named(model_folder):
    with pytest.raises(ModelFolderError, match="export_onnx"): load_model(model_folder, onnx_file="onnx/model.onnx")
    with pytest.raises(ModelFolderError, match="export_onnx"): quantize_onnx(model_folder)

def test_missing_onnx_packages_say_how_to_install_them(own_folder, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(OnnxNotInstalled, match=r"pip install 'reranker_tune\[onnx\]'"): export_onnx(own_folder)
    with pytest.raises(ImportError, match="onnxruntime"): load_model(own_folder, onnx_file="onnx/model.onnx")

def test_onnx_backed_models_go_through_the_evaluation_stage(own_folder):
    from reranker_tune.evaluation import compare_rerankers
    export_onnx(own_folder, quantize=True)
    backends = {"torch": load_model(own_folder, device="cpu"), "onnx": load_model(own_folder, onnx_file="onnx/model.onnx"),
                "int8": load_model(own_folder, onnx_file="onnx/model_qint8_avx512_vnni.onnx")}
    table = compare_backends(eval_samples(), backends, precision="fp32") # fp32 torch: ONNX's precision
    assert list(table.index) == ["torch", "onnx", "int8"] and table.loc["torch", "same top-10"] == 1.0
    assert table.loc["onnx", "max |Δ score|"] <= FP32_TOLERANCE and (table["ms/query"] > 0).all()
    np.testing.assert_allclose(table.loc["onnx", "ndcg@10"], table.loc["torch", "ndcg@10"])
    assert table.loc["int8", "runs on"].startswith("onnxruntime") and table.loc["torch", "runs on"].startswith("torch")
    compared = compare_rerankers(eval_samples(), {"onnx": backends["onnx"]})
    np.testing.assert_allclose(compared.loc["onnx", "ndcg@10"], table.loc["torch", "ndcg@10"])

# --- safety ---

def test_save_model_writes_safetensors_and_no_pickle(model_folder):
    assert (model_folder/"model.safetensors").is_file()
    assert not (model_folder/"pytorch_model.bin").exists() and not list(model_folder.glob("*.bin"))
    assert not list(model_folder.glob("*.pt")) and not list(model_folder.glob("*.pkl"))

def test_an_interrupted_save_keeps_the_finished_model_and_never_looks_like_one(model_folder, tmp_path, monkeypatch):
    folder = Path(shutil.copytree(model_folder, tmp_path/"model"))
    before = (folder/"model.safetensors").read_bytes()
    model = load_reranker(str(folder), device="cpu")
    def broken(self, path, *a, **k):
        Path(path).mkdir(parents=True, exist_ok=True); (Path(path)/"config.json").write_text("{}")
        raise KeyboardInterrupt
    monkeypatch.setattr(type(model), "save_pretrained", broken)
    with pytest.raises(KeyboardInterrupt): save_model(model, folder)
    assert (folder/"model.safetensors").read_bytes() == before # the finished model is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"] # no partial save, no lock left
    killed = tmp_path/".model.partial-99-x"; killed.mkdir() # what a SIGKILL in the middle leaves
    write_folder_mark(killed, "model", finished=False)
    with pytest.raises(ModelFolderError, match="interrupted"): check_model_folder(killed)
    shutil.rmtree(folder)
    with pytest.raises(ModelFolderError, match="training has not finished"): rerank(QUERY, DOCS, source=folder)
    monkeypatch.undo(); save_model(model, folder) # the next save of that name cleans up the killed one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"] and check_model_folder(folder)

def test_pickled_weights_are_refused(model_folder, tmp_path):
    folder = Path(shutil.copytree(model_folder, tmp_path/"model"))
    (folder/"model.safetensors").unlink(); (folder/"pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelFolderError, match="pickled weights"): rerank(QUERY, DOCS, source=folder)

def test_remote_code_is_off_by_default_everywhere_a_model_is_loaded(model_folder, tmp_path):
    import inspect, json
    assert inspect.signature(load_reranker).parameters["trust_remote_code"].default is False
    folder = Path(shutil.copytree(model_folder, tmp_path/"model"))
    config = json.loads((folder/"config_sentence_transformers.json").read_text())
    (folder/"config_sentence_transformers.json").write_text(json.dumps({**config, "activation_fn": "an_untrusted_module.Activation"}))
    model = load_model(folder, device="cpu")
    assert model.trust_remote_code is False and type(model.activation_fn).__name__ == "Sigmoid"
    assert "an_untrusted_module" not in sys.modules

# --- serving what a run ships ---

def fused_reference(model_folder, samples, weight) -> list:
    "The evaluation stage's fused scores for `samples`, computed without serving."
    # hand-made runs record no precision: they were judged, and are served, in fp32
    return fuse_scores(samples, rerank_scores(load_model(model_folder, device="cpu"), samples, show_progress_bar=False,
                                              precision="fp32"), weight)

def test_weight_zero_serves_the_retriever_order_and_never_loads_the_cross_encoder(make_run, heldout, monkeypatch):
    run = make_run(0.0)
    def refuse(*a, **k): raise AssertionError("the cross-encoder was asked for")
    for name in ("cached_model", "load_model", "rerank_scores"): monkeypatch.setattr(serving, name, refuse)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reranker = Reranker(run, device="cpu")
        hits = [reranker.rerank(s["query"], s["documents"], top_k=None) for s in heldout]
    assert [str(w.message) for w in caught if "retriever's order" in str(w.message)] == [f"{run} ships the retriever's order: "
            "the fine-tuned cross-encoder did not beat it on dev, so it is not loaded."]
    assert len(caught) == 1 and reranker.model is None and reranker.shipped == RETRIEVER
    for s, h in zip(heldout, hits): # served in the stored (retriever) order, a sample comes back in that order
        assert [x.id for x in h] == list(range(len(s["documents"])))
        np.testing.assert_allclose([x.score for x in h], s["retriever_scores"], atol=1e-6)
    shuffled = heldout[0]["documents"][::-1]
    assert [x.text for x in reranker.rerank(heldout[0]["query"], shuffled, top_k=None)] == heldout[0]["documents"]

def test_weight_one_serves_the_cross_encoder_order(make_run, model_folder, heldout):
    reranker = Reranker(make_run(1.0), device="cpu")
    assert reranker.retriever_name is None and reranker.shipped == CROSS_ENCODER
    for s in heldout:
        hits = reranker.rerank(s["query"], s["documents"], top_k=None, first_stage_scores=[1.0]*len(s["documents"]))
        expected = CrossEncoder(str(model_folder), device="cpu").rank(s["query"], s["documents"])
        assert [h.id for h in hits] == [e["corpus_id"] for e in expected]
        np.testing.assert_allclose([h.score for h in hits], [e["score"] for e in expected], atol=1e-6)

def test_fusion_ranks_by_the_evaluation_stage_fuse_scores(make_run, model_folder, heldout):
    reranker = Reranker(make_run(0.3), device="cpu")
    fused = fused_reference(model_folder, heldout, 0.3)
    for s, f in zip(heldout, fused):
        hits = reranker.rerank(s["query"], s["documents"], top_k=3, first_stage_scores=s["retriever_scores"])
        assert [h.id for h in hits] == list(np.argsort(-f, kind="stable")[:3])
        np.testing.assert_allclose([h.score for h in hits], np.sort(f)[::-1][:3], atol=1e-4) # z-scores magnify float noise
    # the fused order is neither of its parts' on these samples, so the test tells them apart
    logits = rerank_scores(load_model(model_folder, device="cpu"), heldout, show_progress_bar=False)
    assert any(list(np.argsort(-f, kind="stable")) not in (list(np.argsort(-l, kind="stable")), list(range(len(f))))
               for f, l in zip(fused, logits))

def test_given_first_stage_scores_match_the_recomputed_ones(make_run, heldout):
    reranker = Reranker(make_run(0.3), device="cpu")
    for s in heldout:
        docs = dict(zip([f"doc-{j}" for j in range(len(s["documents"]))], s["documents"]))
        computed = reranker.rerank(s["query"], docs, top_k=None)
        given = reranker.rerank(s["query"], docs, top_k=None, first_stage_scores=s["retriever_scores"])
        by_id = reranker.rerank(s["query"], docs, top_k=None, first_stage_scores=dict(zip(docs, s["retriever_scores"])))
        assert [h.id for h in computed] == [h.id for h in given] == [h.id for h in by_id]
        np.testing.assert_allclose([h.score for h in computed], [h.score for h in given], atol=1e-5)
    with pytest.raises(ValueError, match="5 scores for 6 documents"): reranker.rerank(QUERY, DOCS, first_stage_scores=[0.1]*5)
    with pytest.raises(ValueError, match=r"not finite numbers for documents \[2\]"):
        reranker.rerank(QUERY, DOCS, first_stage_scores=[0.1, 0.2, float("inf"), 0.0, 0.0, 0.0])

@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_served_metrics_equal_the_evaluation_of_the_shipped_system(make_run, model_folder, heldout, weight):
    run = make_run(weight)
    scores = None if weight == 0 else fused_reference(model_folder, heldout, weight) if weight < 1 else \
        rerank_scores(load_model(model_folder, device="cpu"), heldout, show_progress_bar=False, precision="fp32")
    expected = per_query_metrics(heldout, scores)
    for first_stage in ("stored", "recompute"):
        served = served_metrics(run, first_stage=first_stage)
        assert list(served.columns) == ["ndcg@10", "mrr@10", "map"] and len(served) == len(heldout)
        np.testing.assert_allclose(served.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(served_metrics(run, eval_set=heldout[:2]).to_numpy(), expected.to_numpy()[:2], atol=1e-9)
    if weight == 0: np.testing.assert_allclose(served.to_numpy(), per_query_metrics(heldout).to_numpy(), atol=1e-9) # the retriever's row

def test_served_metrics_refuse_to_recompute_silently(make_run, heldout):
    bare = [{k: v for k, v in s.items() if k != "retriever_scores"} for s in heldout]
    with pytest.raises(ValueError, match="Sample 0 has no retriever_scores.*recompute"): served_metrics(make_run(0.3), eval_set=bare)
    with pytest.raises(ValueError, match="first_stage must be"): served_metrics(make_run(0.3, "other"), first_stage="cached")
    assert read_eval_set(make_run(1.0, "third")) == heldout

def test_a_model_folder_serves_the_cross_encoder_alone_and_says_so_once(make_run):
    run = make_run(0.3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reranker = Reranker(run/"model", device="cpu")
        reranker.rerank(QUERY, DOCS); reranker.rerank(QUERY, DOCS[:3])
    assert len(caught) == 1 and reranker.shipped == CROSS_ENCODER and reranker.weight == 1
    assert "cross-encoder alone" in str(caught[0].message) and f"Reranker('{run}')" in str(caught[0].message)
    assert f"'{FUSION}'" in str(caught[0].message)

def test_a_run_folder_without_shipped_json_names_its_model_folder(make_run):
    run = make_run(0.3)
    (run/"shipped.json").unlink()
    with pytest.raises(ModelFolderError, match=r"shipped.json: no such file.*Reranker\('.*model'\)"): Reranker(run)

def test_empty_documents_and_blank_queries_are_refused(make_run):
    reranker = Reranker(make_run(0.3), device="cpu")
    with pytest.raises(ValueError, match=r"documents at \[1, 3\] \(2 in all\) are empty or only whitespace"):
        reranker.rerank(QUERY, ["a", " ", "b", ""])
    with pytest.raises(ValueError, match=r"documents at \['faq-2'\]"): reranker.rerank(QUERY, {"faq-1": "a", "faq-2": "\t"})
    with pytest.raises(ValueError, match="non-empty string"): reranker.rerank(" \n", DOCS)

def test_max_length_is_capped_at_the_model_positions(own_folder):
    with pytest.warns(UserWarning, match=r"max_length=100000 is longer than the model's 256 positions.*lowered to 256"):
        reranker = Reranker(own_folder, device="cpu", max_length=100_000)
    assert reranker.model.max_seq_length == 256
    assert Reranker(own_folder, device="cpu", max_length=64).model.max_seq_length == 64

def _rule(**fields) -> str: return json.dumps(fields)
M = {"model": "m"}

@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object"),
    (_rule(shipped=FUSION, fusion_weight=1.4, retriever=M), r"in \[0, 1\]"),
    (_rule(shipped=FUSION, fusion_weight=-0.1, retriever=M), r"in \[0, 1\]"),
    (_rule(shipped=FUSION, fusion_weight="0.4", retriever=M), r"in \[0, 1\]"),
    (_rule(shipped="bm25", fusion_weight=0.4), "not one of"),
    (_rule(shipped=RETRIEVER, fusion_weight=0.4, retriever=M), f"serves '{re.escape(FUSION)}'"),
    (_rule(shipped=FUSION, fusion_weight=0.4), "names no retriever"),
    (_rule(format=2, shipped=CROSS_ENCODER, fusion_weight=1), "format 2")])
def test_a_bad_shipped_json_is_refused_naming_the_file(make_run, content, message):
    run = make_run(0.3)
    (run/"shipped.json").write_text(content)
    with pytest.raises(ModelFolderError, match=f"shipped.json: .*{message}"): load_shipped_rule(run)
    with pytest.raises(ModelFolderError, match=message): Reranker(run)

def test_shipped_json_without_a_weight_means_the_cross_encoder_alone(make_run):
    run = make_run(1.0)
    (run/"shipped.json").write_text(_rule(format=1, shipped=CROSS_ENCODER, fusion_weight=None))
    assert load_shipped_rule(run)["fusion_weight"] == 1.0 and load_shipped_rule(run)["cross_encoder"]["folder"] == "model"

def test_onnx_serves_the_run_rule_like_torch(make_run, heldout):
    run = make_run(0.3)
    files = export_onnx(run) # a run folder: its model/ is exported
    assert files["fp32"] == run/"model"/"onnx"/"model.onnx" and files["fp32"].is_file()
    assert quantize_onnx(run, "avx2") == run/"model"/"onnx"/"model_quint8_avx2.onnx"
    torch_served, onnx_served = Reranker(run, device="cpu"), Reranker(run, onnx_file="onnx/model.onnx")
    assert onnx_served.model[0].backend == "onnx" and torch_served.model[0].backend != "onnx"
    for s in heldout:
        a = torch_served.rerank(s["query"], s["documents"], top_k=None, first_stage_scores=s["retriever_scores"])
        b = onnx_served.rerank(s["query"], s["documents"], top_k=None, first_stage_scores=s["retriever_scores"])
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-3) # z-scores of logits 1e-5 apart

def test_the_module_rerank_serves_a_run_folder_and_defaults_to_runs_demo(make_run, heldout):
    import inspect
    assert inspect.signature(rerank).parameters["source"].default == "runs/demo"
    assert inspect.signature(Reranker).parameters["source"].default == "runs/demo"
    assert list(inspect.signature(served_metrics).parameters) == ["run_dir", "eval_set", "first_stage"]
    run, s = make_run(0.3), heldout[1]
    once = rerank(s["query"], s["documents"], top_k=4, source=run, device="cpu")
    assert [h.id for h in once] == [h.id for h in Reranker(run, device="cpu").rerank(s["query"], s["documents"], top_k=4)]
