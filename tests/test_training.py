"Training safety: float32 master weights, a model folder only for finished models, training moves the scores."
import shutil
from pathlib import Path
import pytest, torch, datasets
from transformers import AutoModelForSequenceClassification
from reranker_tune.training import load_reranker, save_model, fine_tune

def test_a_float16_checkpoint_trains_in_float32(tiny_bert, tmp_path):
    half = tmp_path/"half"
    shutil.copytree(tiny_bert, half)
    AutoModelForSequenceClassification.from_pretrained(tiny_bert).half().save_pretrained(str(half))
    assert AutoModelForSequenceClassification.from_pretrained(str(half), dtype="auto").dtype == torch.float16
    assert next(load_reranker(str(half), device="cpu").parameters()).dtype == torch.float32

def test_an_interrupted_save_never_looks_complete(tiny_bert, tmp_path, monkeypatch):
    model = load_reranker(tiny_bert, device="cpu")
    def broken(self, path, *a, **k):
        Path(path).mkdir(parents=True, exist_ok=True); (Path(path)/"config.json").write_text("{}")
        raise KeyboardInterrupt
    monkeypatch.setattr(type(model), "save_pretrained", broken)
    with pytest.raises(KeyboardInterrupt): save_model(model, tmp_path/"model")
    assert not (tmp_path/"model").exists()

def test_training_changes_the_scores_and_saves(tiny_bert, tmp_path):
    model = load_reranker(tiny_bert, device="cpu")
    rows = datasets.Dataset.from_dict({"query": ["water a cactus"]*4, "answer": ["rarely, soak then dry", "prune in winter", "full sun", "feed monthly"],
                                       "label": [1.0, 0.0, 0.0, 0.0]})
    before = model.predict([("water a cactus", "rarely, soak then dry")])
    fine_tune(model, rows, "BinaryCrossEntropyLoss", tmp_path/"ck", epochs=3, batch_size=4, learning_rate=1e-3,
              precision="fp32", disable_tqdm=True, report_to="none", save_to=tmp_path/"model")
    assert model.predict([("water a cactus", "rarely, soak then dry")])[0] != pytest.approx(before[0], abs=1e-4)
    assert (tmp_path/"model"/"model.safetensors").exists()

def test_a_model_trained_in_bf16_scores_in_fp32_like_its_saved_copy(tiny_bert, tmp_path):
    "accelerate wraps forward in the training autocast; fine_tune unwraps it, so judged = served."
    from sentence_transformers import CrossEncoder
    from reranker_tune.core import precision_context
    model = load_reranker(tiny_bert, device="cpu")
    rows = datasets.Dataset.from_dict({"query": ["water a cactus"]*4, "answer": ["rarely, soak then dry", "prune in winter", "full sun", "feed monthly"],
                                       "label": [1.0, 0.0, 0.0, 0.0]})
    fine_tune(model, rows, "BinaryCrossEntropyLoss", tmp_path/"ck", epochs=1, batch_size=4, learning_rate=1e-3,
              precision="bf16", disable_tqdm=True, report_to="none", save_to=tmp_path/"model")
    assert "_original_forward" not in model.__dict__, "the training autocast is still wrapped around forward"
    pairs = [("water a cactus", answer) for answer in rows["answer"]]
    with precision_context("fp32"): trained = model.predict(pairs)
    saved = CrossEncoder(str(tmp_path/"model"), device="cpu").predict(pairs)
    assert trained == pytest.approx(saved, abs=1e-6)

def test_bf16_training_scores_dev_with_a_float32_head_and_saves_the_plain_model(tiny_bert, tmp_path):
    "The dev evaluations of a bf16 run see float32 scores (no bf16 ties); the saved model carries no such setting."
    import json
    from transformers import TrainerCallback
    model = load_reranker(tiny_bert, device="cpu")
    head = model.get_submodule("0.model.classifier")
    seen = []
    class HeadDtype(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            with torch.autocast("cpu", dtype=torch.bfloat16): seen.append(head(torch.ones(1, head.in_features)).dtype)
    rows = datasets.Dataset.from_dict({"query": ["water a cactus"]*4, "answer": ["rarely, soak then dry", "prune in winter", "full sun", "feed monthly"],
                                       "label": [1.0, 0.0, 0.0, 0.0]})
    fine_tune(model, rows, "BinaryCrossEntropyLoss", tmp_path/"ck", epochs=1, batch_size=4, learning_rate=1e-3, precision="bf16",
              disable_tqdm=True, report_to="none", save_to=tmp_path/"model", callbacks=[HeadDtype()])
    assert seen and set(seen) == {torch.float32}, "the head ran in bf16 during training"
    assert model.keep_in_fp32_modules == []
    assert "keep_in_fp32_modules" not in json.loads((tmp_path/"model"/"config_sentence_transformers.json").read_text())
