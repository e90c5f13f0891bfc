"fine_tune end to end: the trainer's batch sampler, resume, interruption, a config file and a 2-process launch."
import os, sys, json, shutil, subprocess, textwrap
from pathlib import Path
import pytest, torch, yaml, datasets
from transformers import TrainerCallback
from sentence_transformers.cross_encoder import CrossEncoderTrainer
from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator
from reranker_tune.losses import make_loss
from reranker_tune.training import LengthGroupedBatchSampler, training_arguments, fine_tune, load_reranker
from reranker_tune.advanced_training import train_from_config

from conftest import labelled_sample_rows

VENV_BIN = Path(sys.executable).parent

def labelled_rows(n_queries=12) -> datasets.Dataset:
    "A positive and a wrong answer for each of the first sample questions."
    return labelled_sample_rows(n_queries, wrong_offset=5)

def test_the_trainer_draws_batches_from_the_sampler(tiny_bert, tmp_path):
    model, rows = load_reranker(tiny_bert, device="cpu"), labelled_rows()
    loss = make_loss("BinaryCrossEntropyLoss", model, rows)
    args = training_arguments(tmp_path, loss, precision="fp32", batch_size=4)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=rows, loss=loss)
    sampler = trainer.get_train_dataloader().batch_sampler
    assert isinstance(getattr(sampler, "batch_sampler", sampler), LengthGroupedBatchSampler)
    mnrl_model = load_reranker(tiny_bert, device="cpu")
    mnrl = make_loss("MultipleNegativesRankingLoss", mnrl_model, rows.remove_columns("label"))
    assert training_arguments(tmp_path, mnrl, precision="fp32").batch_sampler is not LengthGroupedBatchSampler

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

def write_config(folder: Path, tiny_bert: str, **extra) -> Path:
    labelled_rows().to_json(str(folder/"rows.jsonl"))
    cfg = {"base_model": tiny_bert, "loss": "BinaryCrossEntropyLoss", "source": str(folder/"rows.jsonl"), "device": "cpu",
           "run_dir": str(folder/"ck"), "save_to": str(folder/"model"), "epochs": 1, "batch_size": 4,
           "precision": "fp32", "disable_tqdm": True, **extra}
    (folder/"run.yaml").write_text(yaml.safe_dump(cfg))
    return folder/"run.yaml"

def test_a_config_file_trains(tiny_bert, tmp_path):
    train_from_config(write_config(tmp_path, tiny_bert))
    assert (tmp_path/"model"/"model.safetensors").exists()
    with pytest.raises(ValueError, match="lacks \\['source'\\]"):
        train_from_config({"base_model": tiny_bert, "loss": "BinaryCrossEntropyLoss", "run_dir": str(tmp_path)})

def test_two_processes_train_and_one_saves(tiny_bert, tmp_path):
    config = write_config(tmp_path, tiny_bert, ddp_backend="gloo")
    script = tmp_path/"launch.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch, hashlib
        from reranker_tune import advanced_training
        model = advanced_training.train_from_config({str(config)!r})
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
