"""What each stage records in the manifest (`stages.<key>.stats`): the one agreement between the stages
that write these dicts and the pipeline, report and export that read them.

Each stage function returns its TypedDict; the pipeline checks the keys (`stats_problem`) before writing
the manifest and says so when they disagree (the tests run every stage and require agreement), so a key
renamed in a stage shows up there, not as a silent blank in a report.
"""

import re
from dataclasses import dataclass
from typing import Any, TypedDict, get_type_hints

from typing_extensions import NotRequired  # typing has it only from 3.11; humback runs on 3.10


class LengthStats(TypedDict):
    mean: float
    std: float


class SeedStats(TypedDict):
    rows: int
    format: str
    read: int
    drops: dict[str, int]  # reason -> rows dropped
    bad_input: dict[str, int]  # problem -> records skipped
    selection: str  # the rule choosing among oasst replies, in words
    instruction_chars: LengthStats
    response_chars: LengthStats


class SegmentStats(TypedDict):
    rows: int
    funnel: dict[str, int]  # documents -> segments -> dropped_<reason> -> kept
    bad_input: dict[str, int]
    extractor: str
    extractor_version: str
    long_sections: str
    quality_filters: list[str]


class GeneratorStats(TypedDict):
    backend: str
    cache_hits: NotRequired[int]
    cache_misses: NotRequired[int]


class AugmentStats(GeneratorStats):
    rows: int
    resumed_rows: int
    empty_instructions: int


class CurateStats(TypedDict):
    rows: int
    selected: int
    threshold: float
    method: str
    skipped_empty_instruction: int
    skipped_ifd: int
    skipped: dict[
        str, int
    ]  # every reason a candidate was not judged (gates, IFD, judge-directed text), counted
    judge_directed: int  # pairs whose text spoke to the judge: neutralised for the judge, scored or skipped
    parse_failures: int
    parse_failure_rate: float
    mean_score: float | None
    score_histogram: dict[str, int]
    response_chars_pool: float
    response_chars_selected: float
    instruction_chars_pool: float
    instruction_chars_selected: float
    # The stage's own record; absent when curate_stats is computed outside it (calibration, benchmarks).
    resumed_rows: NotRequired[int]
    passed_over: NotRequired[dict[str, int]]  # above the threshold, not selected: reason -> rows
    backend: NotRequired[str]
    cache_hits: NotRequired[int]
    cache_misses: NotRequired[int]
    histogram: NotRequired[dict[str, int]]  # judge scores, when a judge scored
    mean_judge_score: NotRequired[float | None]
    sample_parse_failure_rate: NotRequired[float]  # mean-of-k only
    mean_ifd: NotRequired[float | None]  # when forward signals were computed


class RewriteStats(GeneratorStats):
    rows: int  # rows training uses
    model: str | None  # the rewriter
    selected: int
    rewritten: int
    kept_original: int
    dropped: int
    outcome: dict[str, int]  # rewritten | unchanged | unparsed | failed_<check> -> rows
    parse_rate: float
    pass_rate: float  # of the parsed rewrites, the share that passed every check
    mean_length_ratio: float | None
    resumed_rows: int


class Hardware(TypedDict):
    device: str
    bf16: bool
    gradient_checkpointing: bool
    padding_free: bool


class TrainStats(Hardware):
    direction: str
    examples: int
    dropped_too_long: int
    target_tokens: int
    steps: int
    batch_size: int
    method: str
    processes: int
    seconds: float
    resumed_from: str | None
    tokens_seen: int
    tokens_per_s: float | None
    first_loss: float | None
    last_loss: float | None


# Stage kind -> what its stats hold.
STAGE_STATS: dict[str, Any] = {
    "seed": SeedStats,
    "segment": SegmentStats,
    "augment": AugmentStats,
    "curate": CurateStats,
    "train": TrainStats,
}

_KEY = re.compile(r"(seed|segment|augment)|(curate|rewrite):([1-9]\d*)|train:(myx|m(\d+))")


@dataclass(frozen=True)
class StageKey:
    """A manifest key read once: `kind` (seed, segment, augment, curate, train), the `iteration` t of
    curate:t and train:m<t> (None elsewhere; train:m0 is 0), and the `model` a train stage makes."""

    kind: str
    iteration: int | None = None
    model: str | None = None

    @classmethod
    def parse(cls, key: str) -> "StageKey | None":
        m = _KEY.fullmatch(key)
        if m is None:
            return None
        if m.group(1):
            return cls(m.group(1))
        if m.group(2):
            return cls(m.group(2), int(m.group(3)))
        return cls("train", int(m.group(5)) if m.group(5) else None, m.group(4))

    def __str__(self) -> str:
        if self.kind in ("curate", "rewrite"):
            return f"{self.kind}:{self.iteration}"
        return f"train:{self.model}" if self.kind == "train" else self.kind


def stage_keys(iterations: int, rewrite: bool = False) -> list[str]:
    """The loop's stages in the order they run."""
    keys = ["seed", "segment", "train:myx", "augment", "train:m0"]
    for t in range(1, iterations + 1):
        keys += [f"curate:{t}", *([f"rewrite:{t}"] if rewrite else []), f"train:m{t}"]
    return keys


def stats_problem(key: str, stats: dict) -> str | None:
    """What is wrong with `stats` of stage `key` (a required key missing, an undeclared one present), or
    None. A mismatch is a bug in humback, not in the user's input."""
    stage = StageKey.parse(key)
    kind = STAGE_STATS.get(stage.kind) if stage else None
    if kind is None:
        return None
    missing = sorted(kind.__required_keys__ - set(stats))
    extra = sorted(set(stats) - set(get_type_hints(kind)))
    if not missing and not extra:
        return None
    return (
        f"stage {key} returned stats that do not match {kind.__name__} in humback/stats.py: missing "
        f"{missing},"
        f" undeclared {extra}"
    )
