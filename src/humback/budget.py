"""Budgets (config `budget`, docs/plan.md): limits on what a run or one of its stages may spend, applied
between rows.

Each stage's spending is kept in its manifest entry (`spent`: rows, requests, prompt and generated tokens,
dollars, seconds), saved after every chunk of rows, so a killed or stopped stage that resumes goes on
counting from there. Before a generating stage hands the engine more rows, it asks its `Allowance`: the rows
are granted when they fit every limit that applies (the stage's own, its kind's, the run's), judged from
what the stage's rows have cost so far; when they would not fit, the stage stops at that row (or, on
Ray, shard) boundary with its finished rows kept, and the command exits 4 with what was done, what is left
and which key to raise. The same command with the limit raised resumes: the rows are computed once.

Until a stage has finished its first rows nothing tells what a row costs: an eighth of a chunk goes first
(locally; on Ray one shard, the other replicas waiting for it), so a limit is passed by at most that, at
the very start.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from humback.errors import HumbackError

if TYPE_CHECKING:
    from collections.abc import Callable

    from humback.config import BudgetConfig, EngineConfig

# Each limit and the spent quantity it bounds.
BOUNDS = {
    "max_generated_tokens": "generated_tokens",
    "max_prompt_tokens": "prompt_tokens",
    "max_api_cost": "api_cost",
    "max_hours": "seconds",
}
FIRST_SHARE = 8  # a stage's first chunk under a budget: this share of a chunk, run before any cost is known
QUANTITIES = ("rows", "requests", "prompt_tokens", "generated_tokens", "estimated", "api_cost", "seconds")


class BudgetStop(HumbackError):
    """A stage stopped by a budget, its finished work kept: raise the limit named and rerun to continue."""

    exit_code = 4

    def __init__(
        self,
        message: str,
        stage: str,
        limit: str,
        done: int | None = None,
        left: int | None = None,
        unit: str = "rows",
    ):
        super().__init__(message)
        self.stage, self.limit, self.done, self.left, self.unit = stage, limit, done, left, unit


class TimeUp(Exception):
    """Training stopped by its deadline after `done` of `total` steps, checkpointed (the pipeline turns it
    into the stage's BudgetStop)."""

    def __init__(self, done: int, total: int):
        super().__init__(f"stopped after {done} of {total} steps")
        self.done, self.total = done, total


def _bound(limit: str, given: float) -> float:
    """A limit in the units `spent` counts (max_hours in seconds)."""
    return given * 3600 if limit == "max_hours" else given


def zero() -> dict[str, float]:
    return dict.fromkeys(QUANTITIES, 0)


def api_cost(prompt_tokens: int, generated_tokens: int, engine: EngineConfig | None) -> float:
    """US dollars at the role's prices per million tokens (a role without prices costs nothing)."""
    if engine is None:
        return 0.0
    return (prompt_tokens * (engine.price_input or 0) + generated_tokens * (engine.price_output or 0)) / 1e6


def _shown(quantity: str, value: float) -> str:
    if quantity == "seconds":
        return (
            f"{value / 3600:.3g} h"
            if value >= 3600
            else f"{value:.3g} s"
            if value < 100
            else f"{value:.0f} s"
        )
    if quantity == "api_cost":
        return f"${value:.4g}"
    return f"{round(value):,} {quantity.replace('_', ' ')}"


def planned_seconds(st: dict) -> float | None:
    """A planned stage's seconds from its first time source of measured, hardware, api (None: none)."""
    seconds = st.get("seconds") or {}
    return next((seconds[k] for k in ("measured", "hardware", "api") if k in seconds), None)


def forecast(budget: BudgetConfig, stages: dict[str, dict]) -> list[str]:
    """Where a planned run would meet its budget: for each limit the plan passes, the first stage that
    would stop at it and by how much (empty when the plan fits, or there is no budget)."""
    lines, run, passed = [], zero(), set()  # passed: the run's own limits already reported
    for key, st in stages.items():
        got = {
            "prompt_tokens": st.get("prompt_tokens", 0),
            "generated_tokens": (st.get("generated_tokens") or {}).get("expected", 0),
            "api_cost": (st.get("cost_usd") or {}).get("expected", 0),
            "seconds": planned_seconds(st),
        }
        for q, v in got.items():
            run[q] += v or 0
        for path, limits in budget.for_stage(key):
            for limit, given in limits.items():
                q, bound = BOUNDS[limit], _bound(limit, given)
                if got[q] is None:
                    lines.append(f"{key}: {path}.{limit} cannot be checked: the plan has no time for it")
                    continue
                have = run[q] if path == "budget" else got[q]
                if have > bound and (path, limit) not in passed:
                    if path == "budget":
                        passed.add((path, limit))
                    lines.append(
                        f"{key} would stop at {path}.{limit}: the plan expects {_shown(q, have)}"
                        f" of {_shown(q, bound)} by its end"
                    )
    return lines


class Allowance:
    """What one stage may still spend. `scopes` are (config path, limits, what the scope spent outside this
    stage): the stage's own limits spend from 0, the run's from the other stages' `spent`. `spent` is this
    stage's from earlier attempts; `prices` is the role's engine config (for api_cost)."""

    def __init__(
        self,
        stage: str,
        scopes: list[tuple[str, dict[str, float], dict[str, float]]],
        spent: dict[str, float] | None = None,
        prices: EngineConfig | None = None,
    ):
        self.stage, self.scopes, self.prices = stage, scopes, prices
        self.before = {**zero(), **(spent or {})}  # earlier attempts, as the manifest kept them
        self.now = zero()  # this attempt's settled work
        self.work_seconds = 0.0  # engine seconds of the settled units (a row's time, even side by side)
        self.start = time.time()
        self.granted: dict[int, int] = {}  # unit -> rows, granted and not yet settled
        self.refused: tuple[str, str] | None = None  # (config key, why) of the first refusal
        self.on_spend: Callable[[dict], None] | None = None  # set by the pipeline: saves the manifest

    def spent(self) -> dict[str, float]:
        """This stage's spending over all its attempts, the clock included."""
        out = {k: self.before[k] + self.now[k] for k in QUANTITIES}
        out["seconds"] = round(self.before["seconds"] + time.time() - self.start, 1)
        out["api_cost"] = round(out["api_cost"], 6)
        return out

    def _reached(self, spent: dict[str, float]) -> tuple[str, str] | None:
        """The first limit already spent, as (config key, why), else None."""
        for path, limits, outside in self.scopes:
            for limit, given in sorted(limits.items()):
                quantity, bound = BOUNDS[limit], _bound(limit, given)
                have = outside.get(quantity, 0) + spent[quantity]
                if have >= bound:
                    return f"{path}.{limit}", f"{_shown(quantity, have)} spent of {_shown(quantity, bound)}"
        return None

    def check(self) -> None:
        """Raise BudgetStop when a limit is already reached (before the stage starts any work)."""
        reached = self._reached(self.spent())
        if reached:
            key, why = reached
            # A stage stopped before and rerun with the same limit: its finished rows are still kept.
            done = int(self.before["rows"])
            kept = f" ({done} rows done and kept)" if done else ""
            raise BudgetStop(
                f"[{self.stage}] not started: {why}{kept}. Raise {key} (or remove it) and rerun the same"
                " command to continue.",
                self.stage,
                key,
                done=done,
            )

    def claim(self, unit: int, rows: int, whole: bool = False) -> int | None:
        """How many of `rows` more rows (unit: a chunk's or shard's number) may start: all, fewer (0 = stop
        here; with `whole`, all or none), or None = wait, while the first unit is out and no row's cost
        is known yet."""
        if self.refused:
            return 0
        if unit in self.granted:  # the same unit asked again (a Ray task retried): still granted
            return self.granted[unit]
        if not self.scopes:  # no limit: spending is only counted
            self.granted[unit] = rows
            return rows
        # What a row costs, from every attempt's rows (a rerun with the same limit stops where it stopped).
        spent, measured = self.spent(), self.before["rows"] + self.now["rows"]
        self.refused = self._reached(spent)
        if self.refused:
            return 0
        fit = self._fitting(spent, measured, rows) if measured and rows else rows
        if not measured and self.granted and rows:
            return None
        if not measured and not whole:  # a small first chunk tells what a row costs at little risk
            fit = min(fit, max(1, rows // FIRST_SHARE))
        if whole and fit < rows:
            fit = 0
        elif 0 < fit < rows:
            self.refused = None  # the rows that fit go; the next claim is refused
        if fit > 0:
            self.granted[unit] = fit
        return fit

    def _fitting(self, spent: dict[str, float], measured: int, rows: int) -> int:
        """How many of `rows` fit every limit at what a row has cost over `measured` rows; the limit that
        cuts them is kept in `refused`."""
        fit = rows
        for path, limits, outside in self.scopes:
            for limit, given in sorted(limits.items()):
                quantity, bound = BOUNDS[limit], _bound(limit, given)
                have = outside.get(quantity, 0) + spent[quantity]
                if quantity == "seconds":  # units run side by side: a unit's own time, not the queue's
                    per_row, pending = self._row_seconds(), 0
                else:
                    per_row = (self.before[quantity] + self.now[quantity]) / measured
                    pending = sum(self.granted.values())
                if per_row > 0:
                    can = int((bound - have) / per_row) - pending
                    if can < fit:
                        fit = max(0, can)
                        why = f"{_shown(quantity, have)} spent of {_shown(quantity, bound)}"
                        self.refused = (f"{path}.{limit}", f"{why}, about {_shown(quantity, per_row)} a row")
        return fit

    def _row_seconds(self) -> float:
        """A row's engine time: this attempt's, else an earlier one's (its model loading included)."""
        if self.now["rows"]:
            return self.work_seconds / self.now["rows"]
        return self.before["seconds"] / self.before["rows"]

    def settle(self, unit: int, usage: dict, seconds: float) -> dict[str, float]:
        """Count a finished unit: its rows and the engine's `usage` (generation/meter.py), which took
        `seconds`. Returns the stage's spending, saved through `on_spend`."""
        rows = self.granted.pop(unit, usage.get("rows", 0))
        self.now["rows"] += rows
        for k in ("requests", "prompt_tokens", "generated_tokens", "estimated"):
            self.now[k] += usage.get(k, 0)
        self.now["api_cost"] += api_cost(
            usage.get("prompt_tokens", 0), usage.get("generated_tokens", 0), self.prices
        )
        self.work_seconds += seconds
        spent = self.spent()
        if self.on_spend is not None:
            self.on_spend(spent)
        return spent

    def seconds_left(self) -> float | None:
        """Seconds until the nearest max_hours that applies runs out (None: no time limit)."""
        spent = self.spent()["seconds"]
        left = [
            _bound("max_hours", limits["max_hours"]) - outside.get("seconds", 0) - spent
            for _, limits, outside in self.scopes
            if "max_hours" in limits
        ]
        return min(left) if left else None

    def stop(self, done: int, total: int, unit: str = "rows") -> BudgetStop:
        """The error a stage raises when a claim was refused, with `done` of its `total` rows (or training
        steps) finished."""
        key, why = self.refused or self.hours_key()
        return BudgetStop(
            f"[{self.stage}] stopped by its budget after {done} of {total} {unit} ({why}): the {done}"
            f" finished {unit} are kept; raise {key} (or remove it) and rerun the same command to finish"
            f" the {total - done} left.",
            self.stage,
            key,
            done,
            total - done,
            unit,
        )

    def hours_key(self) -> tuple[str, str]:
        """The max_hours that runs out first, as (config key, why)."""
        spent = self.spent()["seconds"]
        path, limits, outside = min(
            (s for s in self.scopes if "max_hours" in s[1]),
            key=lambda s: _bound("max_hours", s[1]["max_hours"]) - s[2].get("seconds", 0),
        )
        have = outside.get("seconds", 0) + spent
        return f"{path}.max_hours", f"{_shown('seconds', have)} spent of {limits['max_hours']:g} h"

    # What a copy elsewhere (the Ray ledger) is built from and hands back: everything but `on_spend`.
    STATE = ("stage", "scopes", "before", "now", "work_seconds", "start", "granted", "refused", "prices")

    def state(self) -> dict:
        return {k: getattr(self, k) for k in self.STATE}

    def load(self, state: dict) -> None:
        """Take over the counts of a copy built from `state()` (the Ray ledger's, at the stage's end)."""
        self.__dict__.update(state)

    @classmethod
    def restore(cls, state: dict) -> Allowance:
        allowance = cls(state["stage"], state["scopes"], prices=state["prices"])
        allowance.load(state)
        return allowance
