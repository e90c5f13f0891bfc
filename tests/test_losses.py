"The loss specs: every loss builds through `make_loss` and takes a training step on its contracted data shape."
import pytest, torch, datasets
from sentence_transformers.cross_encoder import losses as ce_losses
from reranker_tune.data import DataError
from reranker_tune.losses import (LOSS_SPECS, WEIGHTING_SCHEMES, ActivationMismatch, make_loss, loss_table,
                                  model_activation_for, check_activation)
from reranker_tune.training import load_reranker, fine_tune

Q = ["how deep to plant garlic", "when to prune roses", "how often to water a cactus", "what soil for blueberries"]
D = ["5 cm deep, tip up", "late winter, before buds open", "rarely: soak, then let it dry", "acidic, pH 4.5 to 5.5"]

def rows_for(name: str) -> datasets.Dataset:
    "Four rows in the shape the loss's spec asks for."
    c = LOSS_SPECS[name]
    if c.label == "list":
        return datasets.Dataset.from_dict({"query": Q, "docs": [[d, D[(i+1) % 4], D[(i+2) % 4]] for i, d in enumerate(D)],
                                           "labels": [[1.0, 0.0, 0.0]]*4})
    if c.label is None:
        return datasets.Dataset.from_dict({"query": Q, "positive": D, "negative": D[1:] + D[:1]})
    if name == "MarginMSELoss":
        return datasets.Dataset.from_dict({"query": Q, "positive": D, "negative": D[1:] + D[:1], "label": [2.5, 1.0, 3.0, 0.5]})
    labels = {"binary": [1.0, 0.0, 1.0, 0.0], "float": [3.2, -1.5, 0.7, -2.0], "class": [0, 1, 2, 1]}[c.label]
    return datasets.Dataset.from_dict({"query": Q, "document": D[1:] + D[:1], "label": labels})

def one_step(model, loss, rows, tmp_path):
    "Train one step and return how far the weights moved."
    before = [p.detach().clone() for p in model.parameters()]
    fine_tune(model, rows, loss, tmp_path/"ck", max_steps=1, batch_size=4, learning_rate=1e-2, precision="fp32",
              disable_tqdm=True, warmup=0.0, save_strategy="no", report_to="none")
    return max(float((p.detach() - b).abs().max()) for p, b in zip(model.parameters(), before))

CASES = [(name, None) for name in LOSS_SPECS] + [("LambdaLoss", s) for s in WEIGHTING_SCHEMES]

@pytest.mark.parametrize("name,scheme", CASES)
def test_every_loss_builds_and_steps(tiny_bert, tiny_encoder, tmp_path, name, scheme):
    num_labels = 3 if LOSS_SPECS[name].num_labels is None else 1
    model = load_reranker(tiny_bert if num_labels == 1 else tiny_encoder, device="cpu", loss=name, num_labels=num_labels)
    kwargs = {"weighting_scheme": scheme} if scheme else {}
    if name.startswith("Cached"): kwargs["mini_batch_size"] = 2
    loss = make_loss(name, model, rows_for(name), **kwargs)
    assert type(loss).__name__ == name
    if scheme: assert type(loss.weighting_scheme) is type(WEIGHTING_SCHEMES[scheme]())
    assert one_step(model, loss, rows_for(name), tmp_path) > 0

def test_the_table_covers_every_loss_the_library_exports():
    exported = {n for n in ce_losses.__all__ if n.endswith("Loss")}
    assert set(loss_table().index) == exported == set(LOSS_SPECS)
    assert loss_table().loc["LambdaLoss", "mine with"] == "labeled-list"

@pytest.mark.parametrize("name", [n for n, s in LOSS_SPECS.items() if s.activation == "identity" and n != "CrossEntropyLoss"])
def test_raw_logit_losses_refuse_a_sigmoid_model(tiny_bert, name):
    model = load_reranker(tiny_bert, device="cpu")  # one label: predicts with a sigmoid
    assert type(model.activation_fn) is torch.nn.Sigmoid
    with pytest.raises(ActivationMismatch, match=f"load_reranker\\(base, loss='{name}'\\)"):
        make_loss(name, model, rows_for(name))
    assert type(model_activation_for(name)) is torch.nn.Identity

def test_sigmoid_losses_refuse_an_identity_model_and_a_double_sigmoid(tiny_bert):
    raw = load_reranker(tiny_bert, device="cpu", loss="ListNetLoss")
    with pytest.raises(ActivationMismatch, match="torch.nn.Sigmoid()"):
        make_loss("BinaryCrossEntropyLoss", raw, rows_for("BinaryCrossEntropyLoss"))
    bce_model = load_reranker(tiny_bert, device="cpu", loss="BinaryCrossEntropyLoss")
    with pytest.raises(ActivationMismatch, match="drop the activation_fn"):
        make_loss("BinaryCrossEntropyLoss", bce_model, rows_for("BinaryCrossEntropyLoss"), activation_fn=torch.nn.Sigmoid())
    with pytest.raises(ActivationMismatch, match="drop the activation_fn"):
        check_activation(raw, "LambdaLoss", torch.nn.Sigmoid())

def test_pos_weight_is_the_negative_positive_ratio(tiny_bert):
    model = load_reranker(tiny_bert, device="cpu")
    rows = datasets.Dataset.from_dict({"query": ["q"]*8, "document": list("abcdefgh"), "label": [1, 1, 0, 0, 0, 0, 0, 0]})
    assert float(make_loss("BinaryCrossEntropyLoss", model, rows).pos_weight) == pytest.approx(3.0)
    assert float(make_loss("BinaryCrossEntropyLoss", model, rows, pos_weight=1.5).pos_weight) == pytest.approx(1.5)
    no_positive = rows.map(lambda r: {"label": 0})
    assert float(make_loss("BinaryCrossEntropyLoss", model, no_positive).pos_weight) == pytest.approx(1.0)

def test_wrong_shapes_name_the_fix(tiny_bert):
    raw = load_reranker(tiny_bert, device="cpu", loss="ListNetLoss")
    with pytest.raises(DataError, match="output_format='labeled-list'"):
        make_loss("ListNetLoss", raw, rows_for("MSELoss"))
    with pytest.raises(DataError, match="labeled-pair"):
        make_loss("MSELoss", raw, rows_for("ListNetLoss").rename_column("labels", "label"))
    with pytest.raises(ValueError, match="LambdaLoss option"):
        make_loss("ListNetLoss", raw, rows_for("ListNetLoss"), weighting_scheme="ndcg2")
    with pytest.raises(KeyError, match="Unknown loss 'HingeLoss'"):
        make_loss("HingeLoss", raw, rows_for("ListNetLoss"))
