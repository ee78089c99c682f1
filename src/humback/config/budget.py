"""The `budget` section: limits on what a run, or one of its stages, may spend (humback/budget.py applies
them). A budget never enters a fingerprint: raising one and rerunning continues the stage it stopped."""

from __future__ import annotations

import re

from pydantic import field_validator

from humback.config.base import Strict, speed

# A stage key as the manifest names it, or a kind standing for every stage of that kind.
STAGE_KINDS = ("seed", "segment", "augment", "curate", "rewrite", "train")
_STAGE_KEY = re.compile(r"^(seed|segment|augment|curate(:\d+)?|rewrite(:\d+)?|train(:m(yx|\d+))?)$")


class Limits(Strict):
    """What may be spent; null = no limit. Tokens are what the engines were asked to process (prompt) and
    wrote (generated), replies the response cache answered excluded."""

    max_generated_tokens: int | None = speed(None, ge=0, description="tokens the engines generate")
    max_prompt_tokens: int | None = speed(
        None,
        ge=0,
        description="prompt tokens the engines read (a judge scoring by probabilities writes none)",
    )
    max_api_cost: float | None = speed(
        None,
        ge=0.0,
        description="US dollars, from each role's price_input and price_output (a role without prices"
        " costs nothing)",
    )
    max_hours: float | None = speed(
        None, gt=0.0, description="hours of stage time (wall clock, every attempt of a stage counted)"
    )

    def given(self) -> dict[str, float]:
        """The limits set here (the run's own, not its stages')."""
        return {k: getattr(self, k) for k in Limits.model_fields if getattr(self, k) is not None}


class BudgetConfig(Limits):
    """Limits for the whole run (the keys here) and per stage (`stages`). A stage that would pass one stops
    at a row (local) or shard (Ray) boundary with what it finished kept, and the command exits 4; the same
    command with the limit raised continues where it stopped."""

    stages: dict[str, Limits] = speed(
        default_factory=dict,
        description="per stage: a key as in the manifest (augment, curate:2, train:m1) or a kind"
        " (curate: each curate stage its own limit) -> the four limits above",
    )

    @field_validator("stages")
    @classmethod
    def _known(cls, stages: dict[str, Limits]) -> dict[str, Limits]:
        bad = [k for k in stages if not _STAGE_KEY.match(k)]
        if bad:
            raise ValueError(
                f"no such stage: {', '.join(bad)} (a stage key such as augment, curate:1, rewrite:1,"
                f" train:m0, or a kind: {', '.join(STAGE_KINDS)})"
            )
        return stages

    def for_stage(self, key: str) -> list[tuple[str, dict[str, float]]]:
        """The limits that apply to stage `key`, each with the config path that sets it: the stage's own
        (its key, then its kind), then the run's."""
        kind = key.split(":")[0]
        scopes = [
            (f"budget.stages.{k}", self.stages[k].given())
            for k in dict.fromkeys((key, kind))
            if k in self.stages
        ]
        return [s for s in scopes + [("budget", self.given())] if s[1]]
