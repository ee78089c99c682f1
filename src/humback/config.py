"""The run recipe: one YAML file, typed and validated once, with `--set key=value` overrides.

Every problem is reported together, each with the key's dotted path and what is accepted.
"""

from __future__ import annotations

import hashlib
import json
import re
import reprlib
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from humback.errors import HumbackError
from humback.gates import GATES


class ConfigError(HumbackError):
    """An invalid recipe; the message lists every problem with its key path."""


class _Strict(BaseModel):
    # No NaN or infinity anywhere: a NaN weight would make every combined score 5.0 (min(50, nan) is 50).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# What a field does to a stage's outputs, marked where the field is declared; `fingerprint_settings` and
# `CurateConfig.scoring_settings` read the marks, so a new field is in every fingerprint unless marked.
SPEED = "speed"  # how a stage runs (speed, memory, where, whether bad input stops it), never what it writes
SELECTION = "selection"  # curate: chooses among scored rows (in the stage's fingerprint, not the rows')


def speed(default: Any = ..., **kw) -> Any:
    """A field that changes how a stage runs, never what it writes: left out of every fingerprint."""
    return Field(default, json_schema_extra={"effect": SPEED}, **kw)


def selection(default: Any = ..., **kw) -> Any:
    """A curate field that only chooses among scored rows: changing it reruns selection, not scoring."""
    return Field(default, json_schema_extra={"effect": SELECTION}, **kw)


def effect(section: type[BaseModel], name: str) -> str | None:
    """A field's mark (SPEED, SELECTION) or None: it changes what the stage writes."""
    extra = section.model_fields[name].json_schema_extra
    return extra.get("effect") if isinstance(extra, dict) else None  # type: ignore[return-value]


def fingerprint_settings(section: BaseModel, leave_out: tuple[str, ...] = (SPEED,)) -> dict:
    """The section's settings that change what its stage writes, as they enter the stage's fingerprint."""
    cls = type(section)
    return section.model_dump(exclude={n for n in cls.model_fields if effect(cls, n) in leave_out})


class SeedConfig(_Strict):
    """The seed stage: human (instruction, response) pairs from oasst or a pairs file (paper §2.1)."""

    source: str = Field(
        "demo",
        description="'demo' (bundled), an oasst tree export or message table, a pairs"
        " file (JSONL/JSON/CSV/Parquet), or a hub id such as OpenAssistant/oasst1",
    )
    format: Literal["auto", "oasst-trees", "oasst-messages", "pairs"] = Field(
        "auto", description="form of the source; 'auto' tells by the first row's keys"
    )
    split: str = Field("train", description="split of a hub seed dataset")
    instruction_field: str | None = Field(None, description="for generic pairs: the instruction field")
    response_field: str | None = Field(None, description="for generic pairs: the response field")
    min_quality: float | None = Field(
        None, ge=0.0, le=1.0, description="oasst: minimum 'quality' label of the reply"
    )
    lang: str = Field("en", description="language of the seed pairs kept (oasst 'lang')")
    max_pairs: int = Field(3200, ge=1, description="seed pairs kept (paper: 3,200)")
    max_record_bytes: int = Field(
        20_000_000,
        ge=1,
        description="a JSONL line or JSON seed file larger than this"
        " is skipped (counted) before being read whole",
    )
    strict: bool = speed(
        False, description="fail at the first malformed input (with its location) instead of skipping it"
    )


class SegmentConfig(_Strict):
    """The segment stage: unlabelled documents cut into segments, filtered and deduplicated (paper §2.1)."""

    corpus: str = Field(
        "demo",
        description="'demo' (bundled), a file or folder (HTML, WARC, JSONL[.gz|.zst],"
        " Parquet), or a hub dataset id streamed through datasets",
    )
    max_segments: int | None = Field(None, ge=1, description="segments sampled for augmentation; null = all")
    min_chars: int = Field(600, ge=1, description="shortest segment kept (paper: 600)")
    max_chars: int = Field(3000, ge=1, description="longest segment kept (paper: 3,000)")
    text_field: str = Field("text", description="field holding the text in JSONL/Parquet/hub corpora")
    lang: str | None = Field(
        "en", description="keep segments identified as this language (py3langid); null = all"
    )
    near_duplicate_threshold: float | None = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="MinHash Jaccard above which a segment is a near-duplicate; null = exact dedup only",
    )
    extractor: Literal["trafilatura", "resiliparse", "none"] = Field(
        "trafilatura",
        description="HTML main-content extraction before the header cut: trafilatura, resiliparse,"
        " or none (the whole page, the paper's literal reading); see BENCHMARKS.md web_extract",
    )
    long_sections: Literal["split", "drop"] = Field(
        "split",
        description="a header section longer than max_chars: 'split' = windows of its paragraphs under"
        " the same header path (its sub-sections kept as their own); 'drop' = dropped whole (the paper's "
        "rule)",
    )
    quality_filters: list[Literal["gopher_repetition", "gopher_quality", "c4", "fineweb"]] = Field(
        default_factory=list,
        description="datatrove's document filters run on each segment, each counted in the"
        " funnel (pip install 'humback[quality]'); none by default: on segments of real pages they drop more"
        " main text than boilerplate (BENCHMARKS.md web_extract)",
    )
    max_document_chars: int = Field(
        1_000_000,
        ge=1,
        description="documents (plain text, or a page's extracted"
        " main text) longer than this are skipped and counted",
    )
    max_record_bytes: int = Field(
        20_000_000,
        ge=1,
        description="a JSONL line, HTML file or WARC record body larger"
        " than this is skipped (counted) before being read whole",
    )
    max_html_chars: int = Field(
        5_000_000,
        ge=1,
        description="HTML pages longer than this are skipped and counted"
        " before extraction (scripts and markup make pages far longer than their text)",
    )
    shard_size: int = speed(100_000, ge=1, description="rows per shard when the output is a folder")
    strict: bool = speed(
        False, description="fail at the first malformed input (with its location) instead of skipping it"
    )

    @model_validator(mode="after")
    def _lengths(self):
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) must not exceed max_chars ({self.max_chars})")
        return self


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


class EngineKeys(_Strict):
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


ROLES = ("backward", "judge", "answerer", "referee")


class GenerationConfig(EngineKeys):
    """Defaults for every role, and per-role overrides: `backward` (M_yx writing instructions), `judge`
    (curation), `answerer` (the models evaluated), `referee` (the win-rate judge of `humback eval`; the
    base model unless it names one). An override names only the keys it changes; a role is complete (an
    openai role names its model) once merged, when a stage asks for it: `humback augment` needs only the
    backward role."""

    cache: bool = speed(
        True, description="keep every reply in <run>/cache/responses.sqlite and never ask twice"
    )
    backward: RoleConfig | None = Field(None, description="overrides for M_yx writing instructions (augment)")
    judge: RoleConfig | None = Field(None, description="overrides for the curation judge (curate, calibrate)")
    answerer: RoleConfig | None = Field(
        None, description="overrides for the models answering in `humback eval`"
    )
    referee: RoleConfig | None = Field(
        None, description="overrides for eval's win-rate judge (default: the base model)"
    )

    def role(self, name: Literal["backward", "judge", "answerer", "referee"]) -> EngineConfig:
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


class AugmentConfig(_Strict):
    """The augment stage: M_yx writes one instruction per segment (paper §2.2)."""

    # Paper §2.2: nucleus sampling, T = 0.7, top_p = 0.9 for augmentation and curation.
    temperature: float = Field(0.7, ge=0.0, le=5.0, description="sampling temperature (paper: 0.7)")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="nucleus sampling's top_p (paper: 0.9)")
    max_new_tokens: int = Field(128, ge=1, description="longest instruction written, in tokens")


SIGNALS = ("judge_score", "ifd", "nll", "end_logprob", "overlap")


class CurateConfig(_Strict):
    """The curate stage: a judge scores every candidate, the best are selected (paper §2.2, Table 1)."""

    method: Literal["sample", "greedy", "mean-of-k", "expected"] = Field(
        "sample",
        description="how the rubric judge scores: 'sample' (the paper: one reply at T/top_p, parsed for"
        " 'Score: N'), 'greedy' (one reply at T 0), 'mean-of-k' (k sampled replies, parsed scores averaged),"
        " 'expected' (after the sampled reasoning, the expected score under the next-token distribution over "
        "1-5)",
    )
    k: int = Field(5, ge=2, description="replies per candidate for 'mean-of-k'")
    temperature: float = Field(
        0.7, ge=0.0, le=5.0, description="the judge's sampling temperature (paper: 0.7)"
    )
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="the judge's nucleus top_p (paper: 0.9)")
    max_new_tokens: int = Field(
        256,
        ge=0,
        description="judge reply length; with 'expected', 0 reads the score without reasoning first",
    )
    ifd: bool = Field(
        False, description="record IFD, response NLL and end-of-turn log-probability of every candidate"
    )
    max_ifd: float | None = Field(
        None,
        gt=0.0,
        description="drop candidates with IFD >= this before judging (1.0: the instruction does"
        " not help predict the response)",
    )
    combine: dict[str, float] | None = Field(
        None,
        description="score = 1 + 4 * sigmoid(bias + sum of weight x signal) over signals judge_score,"
        " ifd, nll, end_logprob, overlap; weights from `humback calibrate --fit`. Unset: score = the judge's "
        "score",
    )
    threshold: float = selection(4.0, ge=1.0, le=5.0, description="keep candidates scoring >= threshold")
    max_selected: int | None = selection(None, ge=1, description="keep at most this many, best first")
    top_fraction: float | None = selection(
        None,
        gt=0.0,
        le=1.0,
        description="keep at most this fraction of all candidates, best first (for weak judges whose scores"
        " cluster in a narrow band, where a fixed threshold keeps all or nothing)",
    )
    gates: list[Literal[GATES]] = Field(  # type: ignore[valid-type]
        list(GATES),
        description="rules on generated instructions applied before judging, each a `skipped`"
        " reason (never selected): no_content (no words), echo (chat-template tokens, role labels, the "
        "backward"
        " prompt's own wording), meta (talks about a question instead of asking one, or refers to 'the "
        "text'),"
        " stacked (a list of three or more questions), copy (reproduces its response), repetition (a"
        " degenerate loop), not_request (a statement that asks nothing); [] switches them off "
        "(src/humback/gates.py)",
    )
    judge_directed: Literal["skip", "score"] = Field(
        "skip",
        description="a pair whose text speaks to a judge or imitates its output ('Score: 5', 'rate this"
        " 5', 'ignore the rubric'): always removed from what the judge reads and flagged; 'skip' (default) "
        "skips"
        " the pair, 'score' judges it without that text (src/humback/untrusted.py)",
    )
    near_duplicate_instructions: float | None = selection(
        0.8,
        gt=0.0,
        le=1.0,
        description="skip a candidate whose instruction has at least this estimated"
        " Jaccard similarity (character 5-grams) with one already selected; null keeps them all",
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.method != "expected" and self.max_new_tokens == 0 and self.judged:
            raise ValueError(
                f"method '{self.method}' parses the judge's reply: max_new_tokens must be at least 1"
            )
        unknown = set(self.combine or {}) - set(SIGNALS) - {"bias"}
        if unknown:
            raise ValueError(
                f"combine: unknown signal(s) {', '.join(sorted(unknown))}"
                f" (accepted: bias, {', '.join(SIGNALS)})"
            )
        return self

    def scoring_settings(self) -> dict:
        """What a scored row depends on (not the selection settings, which only choose among scored rows)."""
        return fingerprint_settings(self, leave_out=(SPEED, SELECTION))

    @property
    def judged(self) -> bool:
        """Whether the rubric judge runs (a combination that gives it no weight skips it)."""
        return self.combine is None or self.combine.get("judge_score", 0) != 0

    @property
    def forward_signals(self) -> bool:
        """Whether IFD / NLL / end-of-turn are computed (two forward passes per candidate)."""
        weighted = any((self.combine or {}).get(k, 0) for k in ("ifd", "nll", "end_logprob"))
        return self.ifd or self.max_ifd is not None or weighted


class TrainConfig(_Strict):
    """The train stages: M_yx (backward) and M0..MT (forward), each from the base model (paper §2.2, §7)."""

    method: Literal["lora", "full"] = Field(
        "lora", description="LoRA adapters (merged after) or full fine-tuning"
    )
    lr: float = Field(1e-5, gt=0.0, description="peak learning rate (paper: 1e-5)")
    # Paper §7 / Table 18: lr decays linearly from 1e-5 to 9e-6, i.e. to 0.9 of its start (not to 0).
    min_lr_ratio: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="the last step's lr as a fraction of the first (paper: 1e-5 -> 9e-6, 0.9)",
    )
    weight_decay: float = Field(0.1, ge=0.0, description="AdamW weight decay (paper: 0.1)")
    dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="dropout (LoRA dropout with method lora; paper: 0.1)"
    )
    batch_size: int | None = Field(
        None, ge=1, description="examples per step; null = paper rule (8 below 3,000 examples, else 32)"
    )
    micro_batch_size: int = speed(4, ge=1, description="examples per forward pass; the rest is accumulated")
    max_steps: int | None = Field(None, ge=1, description="null = paper Table 18 by data size")
    max_length: int = Field(2048, ge=16, description="tokens; longer examples are dropped and counted")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scale alpha / r)")
    tags: bool = Field(True, description="system tags S_a (seed) / S_w (augmented), paper Table 8")
    gradient_checkpointing: Literal["auto", "on", "off"] = speed(
        "auto",
        description="recompute activations in the backward pass: less memory, more time; 'auto' = on"
        " a GPU only",
    )
    save_steps: int | None = speed(
        None,
        ge=1,
        description="checkpoint every N steps, so a killed training resumes from the last one;"
        " null = about every tenth of the run",
    )


class EvalConfig(_Strict):
    """`humback eval`: held-out NLL, judge calibration and win rates of a finished run (not a stage)."""

    heldout: str | None = Field(
        None, description="held-out pairs JSONL (never training data) for `humback eval`"
    )
    response_field: str = Field(
        "response", description="the held-out file's response column, e.g. output_gpt4"
    )
    nll_pairs: int = Field(100, ge=1, description="held-out pairs for NLL and backward ROUGE-L")
    answer_pairs: int = Field(
        40, ge=1, description="held-out instructions the forward models answer for win rates"
    )
    calibration_pairs: int = Field(
        40, ge=2, description="held-out pairs whose built negatives calibrate each judge"
    )
    max_new_tokens: int = Field(256, ge=1, description="answer length for win rates")
    pairwise_method: Literal["expected", "sample"] = Field(
        "expected",
        description="'expected': P(A) vs P(B) from the judge's next token; 'sample': parse a greedy reply",
    )
    compare: list[tuple[str, str]] | None = Field(
        None,
        description="model pairs for win rates, e.g. [[m2, m0]]; null = each M_t vs M_(t-1), M0 vs base,"
        " and the last M_t vs M0",
    )
    lm_eval_tasks: list[str] = Field([], description="lm-evaluation-harness tasks to run on every model")
    lm_eval_limit: int | None = Field(None, ge=1, description="examples per lm-eval task (null = all)")

    def comparisons(self, iterations: int) -> list[tuple[str, str]]:
        if self.compare is not None:
            return [tuple(p) for p in self.compare]
        pairs = [(f"m{t}", f"m{t - 1}") for t in range(1, iterations + 1)] + [("m0", "base")]
        return pairs + ([(f"m{iterations}", "m0")] if iterations >= 2 else [])


class ClusterConfig(_Strict):
    """Where the generating stages run (augment, curate): this process, or replicas on a Ray cluster
    (`pip install 'humback[ray]'`). README, "Running on a cluster"."""

    engine: Literal["local", "ray"] = speed(
        "local",
        description="'local' = this process (Ray is not imported); 'ray' = generator replicas on a Ray"
        " cluster, rows streamed through Ray Data in shards",
    )
    address: str = speed(
        "local",
        description="ray: 'local' starts a Ray instance in this process (and stops it after); 'auto'"
        " joins the cluster this machine belongs to (ray start); 'ray://HOST:PORT' a remote head via Ray "
        "Client",
    )
    replicas: int = speed(1, ge=1, description="ray: generator replicas (model copies) per generating stage")
    cpus_per_replica: float = speed(
        1.0, gt=0, description="ray: CPUs each replica reserves (and its torch threads)"
    )
    gpus_per_replica: float = speed(
        0.0, ge=0, description="ray: GPUs each replica reserves (0 = CPU replicas)"
    )
    shard_rows: int = speed(
        256,
        ge=1,
        description="ray: rows per shard. Shards are fixed blocks of the input in its order; each"
        " finished shard is saved at once and never recomputed",
    )
    local_cpus: int | None = speed(
        None, ge=1, description="ray, address 'local': CPUs the local instance may use (null = all)"
    )
    train_workers: int = speed(
        0,
        ge=0,
        description="ray: training processes for the train stages through Ray Train (DDP: gloo on CPUs,"
        " NCCL on GPUs); 0 = train in this process. The run folder must be on storage every node reaches",
    )
    train_cpus_per_worker: float = speed(1.0, gt=0, description="ray: CPUs each training worker reserves")
    train_gpus_per_worker: float = speed(
        0.0, ge=0, description="ray: GPUs each training worker reserves (0 = CPU)"
    )


class RunConfig(_Strict):
    """A run: the model, the loop's length, the random seed, and one section per stage."""

    name: str = Field("demo", description="the run's name: its folder is runs/<name> unless --run-dir says")
    model: str = Field(
        "default", description="'default' (embedded SmolLM2-135M-Instruct), a local checkpoint, or a hub id"
    )
    iterations: int = Field(2, ge=1, le=10, description="curation/training rounds after M0 (paper: 2)")
    random_seed: int = Field(
        0, ge=0, lt=2**32, description="the run's random seed (torch and numpy take 0 .. 2**32-1)"
    )
    seed: SeedConfig = Field(SeedConfig(), description="the seed stage")
    segment: SegmentConfig = Field(SegmentConfig(), description="the segment stage")
    generation: GenerationConfig = Field(GenerationConfig(), description="engines for every generating role")
    augment: AugmentConfig = Field(AugmentConfig(), description="the augment stage")
    curate: CurateConfig = Field(CurateConfig(), description="the curate stages")
    train: TrainConfig = Field(TrainConfig(), description="the train stages")
    eval: EvalConfig = Field(EvalConfig(), description="`humback eval`")
    cluster: ClusterConfig = Field(ClusterConfig(), description="where the stages run: this process or Ray")


# Keys of earlier versions -> where they live now: a recipe that uses one is told, not half-read.
MOVED = {
    "seed": "random_seed",
    "data.seed_source": "seed.source",
    "data.seed_format": "seed.format",
    "data.seed_split": "seed.split",
    "data.instruction_field": "seed.instruction_field",
    "data.response_field": "seed.response_field",
    "data.min_quality": "seed.min_quality",
    "data.lang": "seed.lang",
    "data.max_seed": "seed.max_pairs",
    "data.corpus": "segment.corpus",
    "data.max_segments": "segment.max_segments",
    "data.min_chars": "segment.min_chars",
    "data.max_chars": "segment.max_chars",
    "data.text_field": "segment.text_field",
    "data.segment_lang": "segment.lang",
    "data.near_duplicate_threshold": "segment.near_duplicate_threshold",
    "data.extractor": "segment.extractor",
    "data.long_sections": "segment.long_sections",
    "data.quality_filters": "segment.quality_filters",
    "data.max_document_chars": "segment.max_document_chars",
    "data.max_record_bytes": "segment.max_record_bytes (and seed.max_record_bytes)",
    "data.max_html_chars": "segment.max_html_chars",
    "data.shard_size": "segment.shard_size",
    "data.strict": "segment.strict (and seed.strict)",
}


def _moved_keys(data: dict) -> list[str]:
    """The keys of an earlier version in `data`, each with its new place."""
    found = []
    if "seed" in data and not isinstance(data["seed"], dict):  # the random seed, before `seed:` was a section
        found.append(
            f"  seed: the run's random seed is now `random_seed` (`seed:` holds the seed stage's"
            f" settings): write random_seed: {excerpt(data['seed'])}"
        )
    old = data.get("data")
    if isinstance(old, dict):
        for key in old:
            place = MOVED.get(f"data.{key}")
            found.append(
                f"  data.{key}: moved to {place}"
                if place
                else f"  data.{key}: unknown key (the data section is now two: seed and segment)"
            )
    elif "data" in data:
        found.append("  data: the section is now two, seed and segment (see docs/config.md)")
    return found


def _accepted(loc: tuple) -> str:
    """The field names accepted at the level of `loc`'s parent, for 'unknown key' errors."""
    model: type[BaseModel] = RunConfig
    for part in loc[:-1]:
        ann = model.model_fields[part].annotation
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return ""
        model = ann
    return ", ".join(model.model_fields)


_EXCERPT = reprlib.Repr()  # keyword arguments only from Python 3.12
_EXCERPT.maxlevel, _EXCERPT.maxstring, _EXCERPT.maxother, _EXCERPT.maxlong = 3, 80, 80, 40
_EXCERPT.maxtuple = _EXCERPT.maxlist = _EXCERPT.maxdict = _EXCERPT.maxset = 4


def excerpt(value: Any) -> str:
    """A bad value as the error shows it: a bounded repr (nesting, items and string lengths capped), so a
    YAML alias bomb or a huge value is never expanded into the message."""
    text = _EXCERPT.repr(value)
    return text if len(text) <= 300 else text[:300] + "..."


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (accepted here: {_accepted(e['loc'])})")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = "" if e["type"] == "value_error" else f" (got {excerpt(e.get('input'))})"
            lines.append(f"  {key}: {msg}{got}")
    return "\n".join(lines)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for p in parents:
        if node.get(p) is None:  # a section saved as null (e.g. `referee: null`) takes keys set under it
            node[p] = {}
        node = node[p]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{p}' is not a section")
    node[leaf] = value


def _yaml_problem(e: yaml.YAMLError) -> str:
    """The parser's complaint in one bounded line (its problem and where), without the echoed source."""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return str(problem)[:200] + where


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML recipe (or the defaults) and apply `key=value` overrides (values parsed as YAML)."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found: give a YAML recipe such as configs/demo.yaml")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set curate.threshold=4.5")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(
                f"--set {excerpt(item)}: the value is not valid YAML ({_yaml_problem(e)}); quote a"
                " string, e.g. --set name='\"my run\"'"
            ) from None
        _set_dotted(data, key.strip(), value)
    moved = _moved_keys(data)
    if moved:
        where = f" in {path}" if path else ""
        raise ConfigError(f"config keys of an earlier humback{where}:\n" + "\n".join(moved))
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid config{where}:\n{_format(e)}") from None


def fingerprint(*parts: Any) -> str:
    """Stable short hash of JSON-able parts (config sections, prompts, upstream fingerprints)."""
    blob = json.dumps([p.model_dump() if isinstance(p, BaseModel) else p for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
