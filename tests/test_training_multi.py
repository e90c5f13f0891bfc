"fine_tune on several datasets, transfer then adapt, starting from a reranker or a bare encoder, and opt-in trackers."
import json, shutil, importlib.util
from importlib.machinery import ModuleSpec
from pathlib import Path
import pytest, torch, datasets
from transformers import AutoModelForSequenceClassification, BertConfig, BertModel
from sentence_transformers.cross_encoder import CrossEncoderTrainer
from reranker_tune.data import DataError, sample_pairs
from reranker_tune.losses import make_loss
from reranker_tune import advanced_training
from reranker_tune.training import (load_reranker, classification_head_size, HeadMismatch, fine_tune, training_arguments,
                                    LengthGroupedBatchSampler, LengthGroupedWhere, _trainer_inputs, _report_to)
from reranker_tune.advanced_training import batches_per_epoch, transfer_then_adapt, fine_tune_stages

from conftest import labelled_sample_rows

OPTIONS = dict(epochs=1, batch_size=4, precision="fp32", disable_tqdm=True, report_to="none", learning_rate=1e-3, save_strategy="no")

def labelled(n_queries: int) -> datasets.Dataset:
    "A right and a wrong answer for each of the first sample questions."
    return labelled_sample_rows(n_queries, wrong_offset=3)

def triplets(n: int) -> datasets.Dataset:
    pairs = sample_pairs().select(range(n))
    answers = pairs["answer"]
    return datasets.Dataset.from_dict({"query": pairs["query"], "positive": answers,
                                       "negative": [answers[(i + 2) % n] for i in range(n)]})

def counting(loss, calls: dict, name: str):
    "Count the batches `loss` scores, under `name`."
    forward = loss.forward
    def counted(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return forward(*args, **kwargs)
    loss.forward = counted
    return loss

# Several datasets

@pytest.mark.parametrize("policy, expected", [("proportional", {"pairs": 3, "triplets": 1}), ("round_robin", {"pairs": 1, "triplets": 1})])
def test_each_dataset_trains_with_its_own_loss_under_the_policy(tiny_bert, tmp_path, policy, expected):
    model, calls = load_reranker(tiny_bert, device="cpu"), {}
    data = {"pairs": labelled(6), "triplets": triplets(4)}  # 12 and 4 rows: 3 and 1 batches of 4
    losses = {name: counting(make_loss(loss, model, data[name]), calls, name)
              for name, loss in (("pairs", "BinaryCrossEntropyLoss"), ("triplets", "MultipleNegativesRankingLoss"))}
    fine_tune(model, data, losses, tmp_path, multi_dataset_sampler=policy, **OPTIONS)
    assert calls == expected
    assert batches_per_epoch({"pairs": 12, "triplets": 4}, 4, policy) == expected

def test_length_grouping_is_chosen_per_dataset_inside_a_dict(tiny_bert, tmp_path):
    model = load_reranker(tiny_bert, device="cpu")
    data, losses = _trainer_inputs(model, {"pairs": labelled(8), "triplets": triplets(4)},
                                   {"pairs": "BinaryCrossEntropyLoss", "triplets": "MultipleNegativesRankingLoss"})
    args = training_arguments(tmp_path, losses, train_datasets=data, precision="fp32", batch_size=4)
    assert isinstance(args.batch_sampler, LengthGroupedWhere)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=losses)
    sampler = trainer.get_train_dataloader().batch_sampler
    kinds = [type(s).__name__ for s in getattr(sampler, "batch_sampler", sampler).batch_samplers]
    assert kinds == ["LengthGroupedBatchSampler", "DefaultBatchSampler"]
    only_mnrl = training_arguments(tmp_path, {"triplets": losses["triplets"]}, train_datasets=data, precision="fp32")
    assert not isinstance(only_mnrl.batch_sampler, LengthGroupedWhere) and only_mnrl.batch_sampler is not LengthGroupedBatchSampler

def test_one_loss_name_builds_a_loss_per_dataset_fitted_to_it(tiny_bert):
    model = load_reranker(tiny_bert, device="cpu")
    balanced, skewed = labelled(4), labelled(4).map(lambda r, i: {"label": 1.0 if i == 0 else 0.0}, with_indices=True)
    _, losses = _trainer_inputs(model, {"balanced": balanced, "skewed": skewed}, "BinaryCrossEntropyLoss")
    assert losses["balanced"] is not losses["skewed"]
    assert float(losses["balanced"].pos_weight) == 1.0 and float(losses["skewed"].pos_weight) == 7.0

def test_every_dataset_is_checked_against_its_loss_and_named(tiny_bert, tmp_path):
    model = load_reranker(tiny_bert, device="cpu")
    data = {"pairs": labelled(4), "triplets": triplets(4)}
    with pytest.raises(DataError, match="Dataset 'triplets': BinaryCrossEntropyLoss needs a label column"):
        fine_tune(model, data, "BinaryCrossEntropyLoss", tmp_path, **OPTIONS)
    with pytest.raises(ValueError, match=r"No loss for dataset\(s\) \['triplets'\]"):
        fine_tune(model, data, {"pairs": "BinaryCrossEntropyLoss"}, tmp_path, **OPTIONS)
    with pytest.raises(ValueError, match="pick one of proportional, round_robin"):
        fine_tune(model, data, {"pairs": "BinaryCrossEntropyLoss", "triplets": "MultipleNegativesRankingLoss"}, tmp_path,
                  multi_dataset_sampler="random", **OPTIONS)
    assert not list(tmp_path.iterdir())  # refused before any training

def test_the_callers_datasets_come_back_unchanged(tiny_bert, tmp_path):
    data = {"pairs": labelled(2), "triplets": triplets(4)}
    fine_tune(load_reranker(tiny_bert, device="cpu"), data, {"pairs": "BinaryCrossEntropyLoss", "triplets": "MultipleNegativesRankingLoss"},
              tmp_path, **OPTIONS)
    assert set(data["pairs"][0]) == {"query", "document", "label"}  # no `dataset_name` column added by the trainer

# Transfer, then adapt

def test_stages_run_in_order_with_their_own_options_and_only_the_last_saves(tiny_bert, tmp_path, monkeypatch):
    seen, real = [], advanced_training.fine_tune
    def spy(model, **kwargs):
        seen.append((id(model), kwargs["learning_rate"], kwargs.get("save_to"), Path(kwargs["output_dir"]).name))
        return real(model, **kwargs)
    monkeypatch.setattr(advanced_training, "fine_tune", spy)
    model = load_reranker(tiny_bert, device="cpu")
    options = {k: v for k, v in OPTIONS.items() if k != "learning_rate"}
    transfer_then_adapt(model, {"train_dataset": labelled(4), "loss": "BinaryCrossEntropyLoss", "learning_rate": 1e-3},
                        {"train_dataset": labelled(2), "loss": "BinaryCrossEntropyLoss", "learning_rate": 1e-4},
                        tmp_path/"ck", save_to=tmp_path/"model", **options)
    assert seen == [(id(model), 1e-3, None, "stage-0"), (id(model), 1e-4, tmp_path/"model", "stage-1")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "model"]

def test_the_adapt_stage_starts_from_the_transferred_weights(tiny_bert, tmp_path):
    adapt = {"train_dataset": labelled(4), "loss": "BinaryCrossEntropyLoss"}
    direct = fine_tune(load_reranker(tiny_bert, device="cpu"), output_dir=tmp_path/"a", **adapt, **OPTIONS)
    staged = transfer_then_adapt(load_reranker(tiny_bert, device="cpu"), {"train_dataset": labelled(4), "loss": "BinaryCrossEntropyLoss"},
                                 adapt, tmp_path/"b", **OPTIONS)
    pair = [("how is garlic planted", "five centimetres deep")]
    assert staged.predict(pair)[0] != pytest.approx(direct.predict(pair)[0], abs=1e-5)

def test_a_stage_without_data_or_with_its_own_save_is_refused(tiny_bert, tmp_path):
    model = load_reranker(tiny_bert, device="cpu")
    with pytest.raises(ValueError, match=r"Stage 1 lacks \['loss'\]"):
        fine_tune_stages(model, [{"train_dataset": labelled(2), "loss": "BinaryCrossEntropyLoss"}, {"train_dataset": labelled(2)}], tmp_path)
    with pytest.raises(ValueError, match=r"Stage 0 sets \['save_to'\]"):
        fine_tune_stages(model, [{"train_dataset": labelled(2), "loss": "BinaryCrossEntropyLoss", "save_to": tmp_path/"m"}], tmp_path)
    assert not list(tmp_path.iterdir())

# Starting from a reranker or from a bare encoder

@pytest.fixture(scope="module")
def bare_encoder(tiny_bert, tmp_path_factory) -> str:
    "tiny_bert's tokenizer with a BertModel: an encoder without a classification head."
    folder = tmp_path_factory.mktemp("bare")
    for f in Path(tiny_bert).iterdir():
        if f.name not in ("config.json", "model.safetensors"): shutil.copy(f, folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=600, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=256)).save_pretrained(str(folder))
    return str(folder)

def test_a_bare_encoder_gets_a_fresh_head_of_the_size_asked(bare_encoder):
    assert classification_head_size(bare_encoder) is None
    assert load_reranker(bare_encoder, device="cpu").num_labels == 1
    assert load_reranker(bare_encoder, num_labels=3, device="cpu").num_labels == 3

def test_a_trained_reranker_reloads_with_its_head_and_refuses_another_size(bare_encoder, tmp_path):
    model = load_reranker(bare_encoder, num_labels=3, device="cpu", loss="CrossEntropyLoss")
    rows = datasets.Dataset.from_dict({"query": ["q"]*6, "document": list("abcdef"), "label": [0, 1, 2, 0, 1, 2]})
    fine_tune(model, rows, "CrossEntropyLoss", tmp_path/"ck", save_to=tmp_path/"model", **OPTIONS)
    assert classification_head_size(tmp_path/"model") == 3
    reloaded = load_reranker(str(tmp_path/"model"), device="cpu")
    assert reloaded.num_labels == 3
    torch.testing.assert_close(torch.tensor(reloaded.predict([("q", "a")])), torch.tensor(model.predict([("q", "a")])))
    with pytest.raises(HeadMismatch, match=r"trained 3-output head.*num_labels=1.*Pass num_labels=3.*bare encoder"):
        load_reranker(str(tmp_path/"model"), num_labels=1, device="cpu")

def test_the_checkpoint_head_is_kept_not_reinitialised(tiny_bert):
    saved = AutoModelForSequenceClassification.from_pretrained(tiny_bert).classifier.weight
    model = load_reranker(tiny_bert, device="cpu")
    head = dict(model.named_parameters())
    weight = next(v for k, v in head.items() if k.endswith("classifier.weight"))
    torch.testing.assert_close(weight.detach(), saved.detach())
    with pytest.raises(HeadMismatch, match="num_labels=3"):
        load_reranker(tiny_bert, num_labels=3, device="cpu")

def test_an_unreachable_hub_id_is_not_mistaken_for_a_reranker():
    assert classification_head_size("nobody/no-such-model") is None  # offline: loading will say why, not this check

# Trackers: TensorBoard when installed, others only when asked for

def fake_installed(monkeypatch, installed: set, missing: set = frozenset()):
    "Make `find_spec` report `installed` as present and `missing` as absent; everything else as it really is."
    real = importlib.util.find_spec
    def find_spec(name, *args, **kwargs):
        if name in installed: return ModuleSpec(name, None)
        if name in missing: return None
        return real(name, *args, **kwargs)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)

def test_installed_trackers_are_not_used_unless_asked_for(monkeypatch, tmp_path):
    fake_installed(monkeypatch, {"wandb", "codecarbon", "tensorboard"})
    assert _report_to() == ["tensorboard"]
    assert training_arguments(tmp_path, "BinaryCrossEntropyLoss", precision="fp32").report_to == ["tensorboard"]
    assert _report_to(("wandb",), track_emissions=True) == ["tensorboard", "wandb", "codecarbon"]
    assert _report_to("none") == "none" and _report_to("none", track_emissions=True) == ["codecarbon"]

def test_a_tracker_asked_for_but_not_installed_is_a_clear_error(monkeypatch, tmp_path):
    fake_installed(monkeypatch, set(), {"wandb", "codecarbon", "tensorboard"})
    assert _report_to() == "none"
    with pytest.raises(ModuleNotFoundError, match=r"\['wandb'\].*pip install wandb"):
        training_arguments(tmp_path, "BinaryCrossEntropyLoss", report_to=("wandb",), precision="fp32")
    with pytest.raises(ModuleNotFoundError, match="pip install codecarbon"):
        _report_to(track_emissions=True)

def test_tensorboard_event_files_are_written(tiny_bert, tmp_path):
    pytest.importorskip("tensorboard")
    options = {**OPTIONS, "report_to": None, "logging_steps": 1}
    fine_tune(load_reranker(tiny_bert, device="cpu"), labelled(4), "BinaryCrossEntropyLoss", tmp_path, **options)
    assert list((tmp_path/"runs").rglob("events.out.tfevents.*"))
