"Serving: the rerank API, ONNX export and parity on the tiny cross-encoder, and the safety of what is saved and loaded."
import shutil, subprocess, sys
from pathlib import Path
import numpy as np, pytest
from sentence_transformers import CrossEncoder
from reranker_tune import serving
from reranker_tune.serving import (rerank, Reranker, Ranked, load_model, cached_model, check_model_folder, ModelFolderError,
                                   export_onnx, quantize_onnx, onnx_parity, compare_backends, ParityError, OnnxNotInstalled,
                                   FP32_TOLERANCE)
from reranker_tune.training import load_reranker, save_model

QUERY = "how often should I water tomatoes"
DOCS = ["Water tomatoes deeply twice a week.", "Prune apple trees in late winter.", "Roses like full sun.",
        "Tomatoes need more water when they fruit.", "Mulch keeps the soil moist.", "Garlic is planted in autumn."]

def eval_samples(n=4):
    "Eval-set samples: each query with every document as a candidate (the first one its positive)."
    queries = [QUERY, "when to prune apple trees", "do roses need sun", "when to plant garlic"][:n]
    return [{"query": q, "positive": [DOCS[i]], "documents": DOCS} for i, q in enumerate(queries)]

@pytest.fixture(scope="session")
def model_folder(tiny_bert, tmp_path_factory) -> Path:
    "The tiny cross-encoder, saved by the training stage's `save_model`."
    return save_model(load_reranker(tiny_bert, device="cpu"), tmp_path_factory.mktemp("saved")/"model")

@pytest.fixture
def own_folder(model_folder, tmp_path) -> Path:
    "A private copy, for tests that write ONNX files into the folder."
    return Path(shutil.copytree(model_folder, tmp_path/"model"))

# --- the rerank API ---

def test_rerank_returns_the_best_first_as_ranked_rows(model_folder):
    hits = rerank(QUERY, DOCS, top_k=3, model=model_folder)
    assert [h.rank for h in hits] == [1, 2, 3] and all(isinstance(h, Ranked) for h in hits)
    expected = CrossEncoder(str(model_folder), device="cpu").rank(QUERY, DOCS, top_k=3)
    assert [h.id for h in hits] == [e["corpus_id"] for e in expected]
    np.testing.assert_allclose([h.score for h in hits], [e["score"] for e in expected], atol=1e-6)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    assert all(DOCS[h.id] == h.text for h in hits)

def test_a_dict_of_documents_gives_back_its_ids(model_folder):
    docs = {f"faq-{i}": d for i, d in enumerate(DOCS)}
    by_list = rerank(QUERY, DOCS, top_k=None, model=model_folder)
    by_dict = rerank(QUERY, docs, top_k=None, model=model_folder)
    assert [h.id for h in by_dict] == [f"faq-{h.id}" for h in by_list]
    assert [h.text for h in by_dict] == [h.text for h in by_list]

def test_top_k_none_or_larger_than_the_candidates_returns_them_all(model_folder):
    assert len(rerank(QUERY, DOCS, top_k=None, model=model_folder)) == len(DOCS)
    assert len(rerank(QUERY, DOCS, top_k=100, model=model_folder)) == len(DOCS)
    assert len(rerank(QUERY, DOCS[:1], top_k=1, model=model_folder)) == 1

@pytest.mark.parametrize("documents,top_k,error,message", [
    ([], 3, ValueError, "documents is empty"), ({}, 3, ValueError, "documents is empty"),
    (DOCS, 0, ValueError, "at least 1"), (DOCS, -2, ValueError, "at least 1"), (DOCS, "3", TypeError, "whole number"),
    ("a single text", 3, TypeError, "not a single string"), (["ok", 7], 3, TypeError, "not text at [1]")])
def test_bad_requests_fail_with_clear_errors(model_folder, documents, top_k, error, message):
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")): rerank(QUERY, documents, top_k=top_k, model=model_folder)

def test_an_empty_query_is_refused(model_folder):
    with pytest.raises(ValueError, match="non-empty string"): rerank("  ", DOCS, model=model_folder)

def test_a_missing_folder_or_one_that_is_not_a_model_is_named(tmp_path):
    with pytest.raises(ModelFolderError, match="no such model folder.*make demo"): rerank(QUERY, DOCS, model=tmp_path/"nope")
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
    assert [h.id for h in rerank(QUERY, DOCS, model=model)] == [h.id for h in rerank(QUERY, DOCS, model=model_folder)]

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
    onnx_hits = rerank(QUERY, DOCS, top_k=None, model=own_folder, onnx_file="onnx/model.onnx")
    assert [h.id for h in onnx_hits] == [h.id for h in rerank(QUERY, DOCS, top_k=None, model=own_folder)]

def test_int8_export_runs_and_reports_agreement_without_demanding_identity(own_folder):
    files = export_onnx(own_folder, quantize=True)
    assert files["int8"].name == "model_qint8_avx512_vnni.onnx" and files["int8"].stat().st_size < files["fp32"].stat().st_size
    report = onnx_parity(own_folder, files["int8"], eval_samples())
    assert report["quantized"] and not report["strict_order"] and report["tolerance"] == serving.INT8_TOLERANCE
    assert 0 <= report["top1_agreement"] <= 1 and "reported, not required" in report["summary"]
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
    monkeypatch.setattr(serving, "onnx_parity", failing)
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

def test_the_package_imports_without_the_onnx_extra():
    code = ("import sys; sys.modules['onnx'] = sys.modules['onnxruntime'] = None\n"
            "import reranker_tune.serving as s\n"
            "try: s.require_onnx()\nexcept s.OnnxNotInstalled as e: print('refused:', e)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "refused:" in done.stdout and "reranker_tune[onnx]" in done.stdout, done.stderr[-2000:]

def test_onnx_backed_models_go_through_the_evaluation_stage(own_folder):
    from reranker_tune.evaluation import evaluate_rerankers
    export_onnx(own_folder, quantize=True)
    backends = {"torch": load_model(own_folder, device="cpu"), "onnx": load_model(own_folder, onnx_file="onnx/model.onnx"),
                "int8": load_model(own_folder, onnx_file="onnx/model_qint8_avx512_vnni.onnx")}
    table = compare_backends(eval_samples(), backends)
    assert list(table.index) == ["torch", "onnx", "int8"] and table.loc["torch", "same top-10"] == 1.0
    assert table.loc["onnx", "max |Δ score|"] <= FP32_TOLERANCE and (table["ms/query"] > 0).all()
    np.testing.assert_allclose(table.loc["onnx", "ndcg@10"], table.loc["torch", "ndcg@10"])
    assert table.loc["int8", "runs on"].startswith("onnxruntime") and table.loc["torch", "runs on"].startswith("torch")
    result = evaluate_rerankers(eval_samples(), {"onnx": backends["onnx"]})
    np.testing.assert_allclose(result["table"].loc["onnx", "ndcg@10"], table.loc["torch", "ndcg@10"])

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
        Path(path).mkdir(parents=True); (Path(path)/"config.json").write_text("{}")
        raise KeyboardInterrupt
    monkeypatch.setattr(type(model), "save_pretrained", broken)
    with pytest.raises(KeyboardInterrupt): save_model(model, folder)
    assert (folder/"model.safetensors").read_bytes() == before # the finished model is untouched
    with pytest.raises(ModelFolderError, match="interrupted"): check_model_folder(tmp_path/"model.partial")
    shutil.rmtree(folder)
    with pytest.raises(ModelFolderError, match="training has not finished"): rerank(QUERY, DOCS, model=folder)

def test_pickled_weights_are_refused(model_folder, tmp_path):
    folder = Path(shutil.copytree(model_folder, tmp_path/"model"))
    (folder/"model.safetensors").unlink(); (folder/"pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelFolderError, match="pickled weights"): rerank(QUERY, DOCS, model=folder)

def test_remote_code_is_off_by_default_everywhere_a_model_is_loaded(model_folder, tmp_path):
    import inspect, json
    assert inspect.signature(load_reranker).parameters["trust_remote_code"].default is False
    folder = Path(shutil.copytree(model_folder, tmp_path/"model"))
    config = json.loads((folder/"config_sentence_transformers.json").read_text())
    (folder/"config_sentence_transformers.json").write_text(json.dumps({**config, "activation_fn": "an_untrusted_module.Activation"}))
    model = load_model(folder, device="cpu")
    assert model.trust_remote_code is False and type(model.activation_fn).__name__ == "Sigmoid"
    assert "an_untrusted_module" not in sys.modules
