"fine_tune in depth: length-grouped batches, the metric key, resume, interruption, the OOM probe, the CLI and a 2-process launch."
import os, sys, json, shutil, subprocess, textwrap
from pathlib import Path
import pytest, torch, yaml, datasets
from transformers import TrainerCallback
from sentence_transformers.cross_encoder import CrossEncoderTrainer
from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
from reranker_tune.data import sample_pairs
from reranker_tune.losses import make_loss
from reranker_tune.training import (LengthGroupedBatchSampler, _row_lengths, padding_share, metric_key, fine_tune_arguments,
                                    fine_tune, load_reranker, largest_batch_size, training_step, train_from_config, main)

from conftest import labelled_sample_rows

VENV_BIN = Path(sys.executable).parent

def labelled_rows(n_queries=12) -> datasets.Dataset:
    "A positive and a wrong answer for each of the first sample questions."
    return labelled_sample_rows(n_queries, wrong_offset=5)

@pytest.mark.parametrize("drop_last", [False, True])
def test_the_sampler_uses_every_row_once_per_epoch(drop_last):
    pairs = sample_pairs()
    sampler = LengthGroupedBatchSampler(pairs, batch_size=16, drop_last=drop_last, seed=3)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        seen = [i for b in batches for i in b]
        assert len(seen) == len(set(seen)) and len(batches) == len(sampler)
        if drop_last: assert all(len(b) == 16 for b in batches) and len(seen) == len(pairs)//16*16
        else: assert sorted(seen) == list(range(len(pairs)))

def test_the_sampler_order_is_seeded_and_pads_less():
    pairs = sample_pairs()
    one, same, other = (LengthGroupedBatchSampler(pairs, 16, False, seed=s) for s in (3, 3, 4))
    assert list(one) == list(same) and list(one) != list(other)
    one.set_epoch(1); assert list(one) != list(same)
    lengths = _row_lengths(pairs)
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(0)).tolist()
    random_batches = [order[i:i+16] for i in range(0, len(order), 16)]
    assert padding_share(list(same), lengths) < 0.5*padding_share(random_batches, lengths)

def test_the_trainer_draws_batches_from_the_sampler(tiny_bert, tmp_path):
    model, rows = load_reranker(tiny_bert, device="cpu"), labelled_rows()
    loss = make_loss("BinaryCrossEntropyLoss", model, rows)
    args = fine_tune_arguments(tmp_path, loss, precision="fp32", batch_size=4)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=rows, loss=loss)
    sampler = trainer.get_train_dataloader().batch_sampler
    assert isinstance(getattr(sampler, "batch_sampler", sampler), LengthGroupedBatchSampler)
    mnrl_model = load_reranker(tiny_bert, device="cpu")
    mnrl = make_loss("MultipleNegativesRankingLoss", mnrl_model, rows.remove_columns("label"))
    assert fine_tune_arguments(tmp_path, mnrl, precision="fp32").batch_sampler is not LengthGroupedBatchSampler

def test_the_metric_key_carries_both_prefixes():
    ev = CrossEncoderRerankingEvaluator([{"query": "q", "positive": ["a"], "negative": ["b"]}], name="dev", at_k=5)
    assert metric_key(ev) == ("eval_dev_ndcg@5", True)
    unnamed = CrossEncoderRerankingEvaluator([{"query": "q", "positive": ["a"], "negative": ["b"]}])
    assert metric_key(unnamed) == ("eval_ndcg@10", True)

def test_best_model_and_early_stopping_run_with_an_evaluator(tiny_bert, tmp_path):
    rows = labelled_rows()
    ev = CrossEncoderRerankingEvaluator([{"query": q, "positive": [d], "negative": rows["document"][1:4]}
                                         for q, d in zip(rows["query"][::2][:4], rows["document"][::2][:4])], name="dev")
    model = load_reranker(tiny_bert, device="cpu")
    fine_tune(model, rows, "BinaryCrossEntropyLoss", tmp_path/"ck", evaluator=ev, save_to=tmp_path/"model", patience=1,
              epochs=3, batch_size=4, eval_steps=3, precision="fp32", disable_tqdm=True, learning_rate=1e-3)
    state = json.loads(sorted((tmp_path/"ck").glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    assert state["best_metric"] is not None and "eval_dev_ndcg@10" in state["log_history"][0] | state["log_history"][-2]
    from safetensors.torch import load_file
    saved = load_file(tmp_path/"model"/"model.safetensors")
    best = load_file(Path(state["best_model_checkpoint"])/"model.safetensors")
    assert all(torch.equal(saved[k], best[k]) for k in best), "the saved weights are the best checkpoint's"

class StopAt(TrainerCallback):
    "Stop training (as a preemption would) right after step `n` has been checkpointed."
    def __init__(self, n): self.n = n
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.n: control.should_save = control.should_training_stop = True

def weights(model): return torch.cat([p.detach().flatten() for p in model.parameters()])

def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tiny_bert, tmp_path):
    "Tolerance: 1e-5 absolute on every weight (same CPU, same seed; dropout RNG and data position restored)."
    rows = labelled_rows()
    opts = dict(epochs=2, batch_size=4, eval_steps=2, learning_rate=1e-3, precision="fp32", disable_tqdm=True, seed=5)
    straight = fine_tune(load_reranker(tiny_bert, device="cpu"), rows, "BinaryCrossEntropyLoss", tmp_path/"a",
                         resume_from_checkpoint=True, **opts)  # nothing to resume from yet: starts fresh
    fine_tune(load_reranker(tiny_bert, device="cpu"), rows, "BinaryCrossEntropyLoss", tmp_path/"b", callbacks=[StopAt(5)],
              save_to=tmp_path/"b-model", **opts)
    assert (tmp_path/"b"/"checkpoint-5").exists()
    resumed = fine_tune(load_reranker(tiny_bert, device="cpu"), rows, "BinaryCrossEntropyLoss", tmp_path/"b",
                        resume_from_checkpoint=True, **opts)
    moved = (weights(straight) - weights(load_reranker(tiny_bert, device="cpu"))).abs().max()
    assert moved > 1e-3  # training did something, so equality below means something
    torch.testing.assert_close(weights(resumed), weights(straight), atol=1e-5, rtol=0)

def test_an_interrupted_run_leaves_no_model_folder(tiny_bert, tmp_path):
    class Boom(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 2: raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        fine_tune(load_reranker(tiny_bert, device="cpu"), labelled_rows(), "BinaryCrossEntropyLoss", tmp_path/"ck",
                  callbacks=[Boom()], save_to=tmp_path/"model", batch_size=4, precision="fp32", disable_tqdm=True)
    assert not (tmp_path/"model").exists() and not (tmp_path/"model.partial").exists()

def test_the_probe_halves_until_a_fake_oom_stops(tiny_bert):
    model, rows = load_reranker(tiny_bert, device="cpu"), labelled_rows()
    step = training_step(model, make_loss("BinaryCrossEntropyLoss", model, rows), rows)
    tried = []
    def fake_gpu(batch_size):
        tried.append(batch_size)
        if batch_size > 40: raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return step(batch_size)
    assert largest_batch_size(fake_gpu, start=320) == 40
    assert tried == [320, 160, 80, 40]
    with pytest.raises(ValueError, match="boom"):  # other errors are not mistaken for OOM
        largest_batch_size(lambda b: (_ for _ in ()).throw(ValueError("boom")), start=8)

def write_config(folder: Path, tiny_bert: str, **extra) -> Path:
    labelled_rows().to_json(str(folder/"rows.jsonl"))
    cfg = {"base": tiny_bert, "loss": "BinaryCrossEntropyLoss", "train_data": str(folder/"rows.jsonl"), "device": "cpu",
           "output_dir": str(folder/"ck"), "save_to": str(folder/"model"), "epochs": 1, "batch_size": 4,
           "precision": "fp32", "disable_tqdm": True, **extra}
    (folder/"run.yaml").write_text(yaml.safe_dump(cfg))
    return folder/"run.yaml"

def test_the_cli_trains_from_a_config(tiny_bert, tmp_path):
    main(["train", "--config", str(write_config(tmp_path, tiny_bert))])
    assert (tmp_path/"model"/"model.safetensors").exists()
    with pytest.raises(ValueError, match="lacks \\['train_data'\\]"):
        train_from_config({"base": tiny_bert, "loss": "BinaryCrossEntropyLoss", "output_dir": str(tmp_path)})

def test_two_processes_train_and_one_saves(tiny_bert, tmp_path):
    config = write_config(tmp_path, tiny_bert, ddp_backend="gloo")
    script = tmp_path/"launch.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch, hashlib
        from reranker_tune import training
        model = training.train_from_config({str(config)!r})
        flat = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy().tobytes()
        open(os.path.join({str(tmp_path)!r}, "rank" + os.environ["RANK"]), "w").write(
            os.environ["WORLD_SIZE"] + " " + hashlib.sha1(flat).hexdigest())
    """))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1",
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([str(VENV_BIN/"torchrun"), "--nproc_per_node", "2", "--master_port", "29531", str(script)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    marks = [(tmp_path/f"rank{r}").read_text().split() for r in (0, 1)]
    assert [m[0] for m in marks] == ["2", "2"] and marks[0][1] == marks[1][1]  # both trained, in step
    assert [p.name for p in tmp_path.iterdir() if (p/"model.safetensors").exists()] == ["model"]
    assert not (tmp_path/"model.partial").exists()
