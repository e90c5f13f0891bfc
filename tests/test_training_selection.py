"Which checkpoint fine_tune keeps, and what it records: the last step evaluated, the best step's weights and card metrics, the state file, the device."
import json
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
from reranker_tune.core import detect_precision
from reranker_tune.training import load_reranker, fine_tune, dev_evaluation_steps, write_model_card
from conftest import labelled_sample_rows

class ScriptedDev(CrossEncoderRerankingEvaluator):
    "A dev evaluator whose NDCG@10 follows a script, so the best step is known in advance."
    def __init__(self, ndcgs):
        super().__init__([{"query": "q", "positive": ["a"], "negative": ["b"]}], name="dev", write_csv=False)
        self.ndcgs, self.calls = list(ndcgs), 0

    def __call__(self, model, output_path=None, epoch=-1, steps=-1):
        value = self.ndcgs[self.calls]; self.calls += 1
        metrics = {"dev_ndcg@10": value, "dev_mrr@10": value/2, "dev_map": value/3}
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

def _train(tiny_bert, out, evaluator, **kw):
    model = load_reranker(tiny_bert, device="cpu")
    fine_tune(model, labelled_sample_rows(12, 5), "BinaryCrossEntropyLoss", out/"ck", evaluator=evaluator, patience=None,
              batch_size=4, learning_rate=1e-3, disable_tqdm=True, report_to="none", logging_steps=100, **kw)
    return model

def test_dev_is_evaluated_at_exactly_the_announced_steps_the_last_one_included(tiny_bert, tmp_path):
    "24 rows, batch 4, 2 epochs: 12 steps; eval_steps=0.3 -> every ceil(3.6) = 4 steps, and 12 is the last."
    dev = ScriptedDev([0.5]*10)
    _train(tiny_bert, tmp_path, dev, epochs=2, eval_steps=0.3, state_file=tmp_path/"state.json")
    state = json.loads((tmp_path/"state.json").read_text())
    evaluated = [h["step"] for h in state["log_history"] if "eval_dev_ndcg@10" in h]
    assert state["max_steps"] == 12 and evaluated == dev_evaluation_steps(12, 0.3) == [4, 8, 12]
    assert dev_evaluation_steps(10, 0.3) == [3, 6, 9, 10], "a last step off the schedule is added"

def test_the_last_step_off_the_schedule_is_evaluated_and_can_be_selected(tiny_bert, tmp_path, capsys):
    "12 steps every 5: 5, 10 and 12; the script makes step 12 the best, so the returned model is the end of training."
    dev = ScriptedDev([0.3, 0.4, 0.9])
    model = _train(tiny_bert, tmp_path, dev, epochs=2, eval_steps=5, state_file=tmp_path/"state.json",
                   save_to=tmp_path/"model")
    state = json.loads((tmp_path/"state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "eval_dev_ndcg@10" in h] == [5, 10, 12]
    assert (state["best_global_step"], state["best_metric"]) == (12, 0.9)
    assert "best checkpoint: step 12, dev ndcg@10 0.9000" in capsys.readouterr().out

def test_the_saved_model_and_its_card_are_the_best_checkpoints_not_the_last(tiny_bert, tmp_path, capsys):
    "Best at step 5 of 5, 10, 12: the saved weights are checkpoint-5's, and the card shows step 5's metrics."
    dev = ScriptedDev([0.8, 0.4, 0.6])
    model = _train(tiny_bert, tmp_path, dev, epochs=2, eval_steps=5, state_file=tmp_path/"state.json",
                   save_to=tmp_path/"model")
    state = json.loads((tmp_path/"state.json").read_text())
    assert (state["best_global_step"], state["best_metric"]) == (5, 0.8)
    assert "best checkpoint: step 5, dev ndcg@10 0.8000" in capsys.readouterr().out
    saved, best = load_file(tmp_path/"model"/"model.safetensors"), load_file(tmp_path/"ck"/"checkpoint-5"/"model.safetensors")
    last = load_file(tmp_path/"ck"/"checkpoint-12"/"model.safetensors")
    assert saved.keys() == best.keys() and all(torch.equal(saved[k], best[k]) for k in saved)
    assert not all(torch.equal(saved[k], last[k]) for k in saved), "training moved the weights after step 5"
    assert model.model_card_data.eval_results_dict[dev] == {"dev_ndcg@10": 0.8, "dev_mrr@10": 0.4, "dev_map": 0.8/3}
    card = write_model_card(model, tmp_path/"model", "all-MiniLM-L6-v2", dataset_name="garden sample",
                            extra_markdown="| system | NDCG@10 |\n|---|---|\n| fine-tuned | 0.8 |").read_text()
    assert "value: 0.8\n" in card and "value: 0.6\n" not in card, "the card's metrics are step 5's"
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card and "license: apache-2.0" in card
    assert "language:\n- en\n" in card
    assert "garden sample" in card and "## This model in its run" in card and "| fine-tuned | 0.8 |" in card

def test_fine_tune_trains_on_the_models_device_with_its_precision(tiny_bert, tmp_path, monkeypatch):
    "The arguments follow the model's device, not detect_device(): a GPU machine does not turn a CPU run into bf16."
    import reranker_tune.training as training
    seen = {}
    real = training.training_arguments
    def spy(*a, **kw):
        args = real(*a, **kw); seen.update(use_cpu=args.use_cpu, bf16=args.bf16, fp16=args.fp16); return args
    monkeypatch.setattr(training, "training_arguments", spy)
    monkeypatch.setattr(training, "detect_device", lambda: "cuda")  # what a GPU machine would answer
    model = load_reranker(tiny_bert, device="cpu")
    fine_tune(model, labelled_sample_rows(4, 1), "BinaryCrossEntropyLoss", tmp_path/"ck", epochs=1, batch_size=4,
              disable_tqdm=True, report_to="none")
    # the CPU's own precision (bf16 where it has AMX or AVX512-BF16), never the GPU's fp16
    assert seen == {"use_cpu": True, "bf16": detect_precision("cpu") == "bf16", "fp16": False}
