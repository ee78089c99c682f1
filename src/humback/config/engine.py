"""The generation section: where each role's text comes from (backend, model, engine settings), and
the URL rules an OpenAI-compatible endpoint must meet."""

from __future__ import annotations

import re
from typing import Literal, get_args

from pydantic import Field, ValidationError, field_serializer, field_validator, model_validator

from humback.config.base import ConfigError, Strict, fingerprint_settings, speed

Backend = Literal["auto", "transformers", "ctranslate2", "openvino", "llamacpp", "vllm", "openai"]
BACKENDS = get_args(Backend)  # the one list: CLI choices and error messages read it


def redact_url(url: str | None) -> str | None:
    """A URL without the secrets it may carry (user:password@, a query string): what may be written."""
    if not url:
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def is_loopback(url: str) -> bool:
    """Whether a URL points at this machine (localhost, 127.0.0.0/8, ::1)."""
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EngineKeys(Strict):
    """Where one role's text comes from. Every key applies to the backends named in its description."""

    backend: Backend = Field(
        "auto",
        description="'auto' = vllm on a GPU if installed, else transformers; on a CPU openvino if"
        " installed, else ctranslate2, else transformers",
    )
    model: str | None = Field(
        None,
        description="null = the pipeline's own model for the role (M_yx, M_{t-1}, the model evaluated);"
        " else a checkpoint, hub id, or for openai the served model's name",
    )
    batch_size: int = speed(
        8,
        ge=1,
        description="transformers, ctranslate2: requests per forward batch;"
        " openvino: sequences decoded side by side",
    )
    device: str = speed("auto", description="transformers, ctranslate2: 'auto', 'cpu', 'cuda', 'cuda:1' ...")
    compute_type: str = Field(
        "int8",
        description="ctranslate2: weight precision (int8, int8_float32, float32,"
        " ...); openvino: int8 (GGUF Q8_0) or float16 weights",
    )
    sampling_top_k: int = Field(
        1000,
        ge=0,
        description="ctranslate2, openvino: sample from the k most probable tokens, then apply top_p"
        " within them; 0 = the whole vocabulary (exact top_p, but every step sorts it: about 2x slower "
        "decoding). On"
        " the augmentation workload the default model's nucleus (T 0.7, top_p 0.9) never held more than 232"
        " tokens in 4,468 steps, so 1000 cuts nothing there (bench/nucleus_size.py)",
    )
    workers: int = speed(
        0,
        ge=0,
        description="ctranslate2: batches run side by side, each worker a copy of the model with"
        " cores / workers threads; 0 = 2 on a CPU with 2+ cores when two copies take under an eighth of the"
        " memory, else 1",
    )
    tensor_parallel_size: int = speed(1, ge=1, description="vllm: GPUs per model")
    gpu_memory_utilization: float = speed(
        0.9, gt=0.0, le=1.0, description="vllm: fraction of GPU memory to use"
    )
    base_url: str | None = Field(None, description="openai: the server, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = speed("OPENAI_API_KEY", description="openai: environment variable holding the API key")
    concurrency: int = speed(16, ge=1, description="openai: requests in flight")
    timeout: float = speed(120.0, gt=0.0, description="openai: seconds per request")
    max_retries: int = speed(
        5, ge=0, description="openai: retries (with backoff) on 429, 5xx and lost connections"
    )
    price_input: float | None = speed(
        None,
        ge=0.0,
        description="openai: US dollars per million prompt tokens, for `humback plan` and `budget`"
        " (0 for a server of your own)",
    )
    price_output: float | None = speed(
        None, ge=0.0, description="openai: US dollars per million generated tokens (see price_input)"
    )
    latency_s: float | None = speed(
        None,
        gt=0.0,
        description="openai: seconds one request takes, for `humback plan`'s time (--measure measures it)",
    )

    @field_validator("base_url")
    @classmethod
    def _safe_url(cls, url: str | None) -> str | None:
        if url is None:
            return url
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url {redact_url(url)!r} is not an http(s) URL with a host")
        if parts.scheme == "http" and not is_loopback(url):
            raise ValueError(
                f"base_url {redact_url(url)!r}: plain http is only accepted to this machine (the key"
                " and every request would cross the network unencrypted); use https"
            )
        if parts.username or parts.password:
            raise ValueError(
                "base_url must not carry credentials (user:password@): put the key in the"
                " variable named by api_key_env"
            )
        return url

    @field_validator("api_key_env")
    @classmethod
    def _key_variable(cls, name: str) -> str:
        # The key's endpoint is paired by the variable <PREFIX>_BASE_URL (see generation/openai_api.py), so
        # a recipe cannot name just any secret in the environment.
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*_API_KEY", name):
            raise ValueError(
                f"api_key_env {name!r}: name a variable ending in _API_KEY (e.g. OPENAI_API_KEY)"
            )
        return name

    @field_serializer("base_url")
    def _written_url(self, url: str | None) -> str | None:
        return redact_url(url)  # config.yaml, the manifest and the dataset card never hold a URL's secrets


class EngineConfig(EngineKeys):
    """One role's engine, complete: the generation defaults with the role's overrides on top."""

    @model_validator(mode="after")
    def _served_model(self):
        if self.backend == "openai" and not self.model:
            raise ValueError("the openai backend needs `model`: the name the server serves the model under")
        return self

    def identity(self) -> dict:
        """The settings that change what is generated (not how fast): for stage fingerprints."""
        return fingerprint_settings(self)


class RoleConfig(EngineKeys):
    """A role's overrides: only the keys given apply, on top of the generation defaults."""


class GenerationConfig(EngineKeys):
    """Defaults for every role, and per-role overrides: `backward` (M_yx writing instructions), `judge`
    (curation), `rewriter` (the rewrite stage; the base model unless it names one), `answerer` (the models
    evaluated), `referee` (the win-rate judge of `humback eval`; the base model unless it names one). An
    override names only the keys it changes; a role is complete (an openai role names its model) once
    merged, when a stage asks for it: `humback augment` needs only the backward role."""

    cache: bool = speed(
        True, description="keep every reply in <run>/cache/responses.sqlite and never ask twice"
    )
    backward: RoleConfig | None = Field(None, description="overrides for M_yx writing instructions (augment)")
    judge: RoleConfig | None = Field(None, description="overrides for the curation judge (curate, calibrate)")
    answerer: RoleConfig | None = Field(
        None, description="overrides for the models answering in `humback eval`"
    )
    rewriter: RoleConfig | None = Field(
        None,
        description="overrides for the rewrite stage's model (default: the base model, which needs a"
        " chat template; Back-and-Forth used a strong aligned model)",
    )
    referee: RoleConfig | None = Field(
        None, description="overrides for eval's win-rate judge (default: the base model)"
    )

    def role(self, name: Literal["backward", "judge", "answerer", "referee", "rewriter"]) -> EngineConfig:
        # Attributes, not model_dump: a dump redacts base_url, and the engine needs the real one.
        base = {k: getattr(self, k) for k in EngineKeys.model_fields}
        override = getattr(self, name)
        if override is not None:
            base.update({k: getattr(override, k) for k in override.model_fields_set})
        try:
            return EngineConfig.model_validate(base)
        except ValidationError as e:
            problems = "; ".join(
                (f"{'.'.join(map(str, x['loc']))}: " if x["loc"] else "")
                + x["msg"].removeprefix("Value error, ")
                for x in e.errors()
            )
            raise ConfigError(f"invalid config: generation.{name}: {problems}") from None
