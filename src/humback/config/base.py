"""What every config section is built on: strict models (no unknown key, no NaN), the marks that say
what a field does to a stage's outputs, and the fingerprints derived from them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from humback.errors import HumbackError


class ConfigError(HumbackError):
    """An invalid recipe; the message lists every problem with its key path."""


class Strict(BaseModel):
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


def added(default: Any = ..., effect: str | None = None, **kw) -> Any:
    """A field of a feature added after stages had fingerprints: it enters them only when set away from its
    default, so a run that does not use the feature keeps the fingerprints it had (and skips its stages)."""
    return Field(default, json_schema_extra={"effect": effect, "added": True}, **kw)


def _extra(section: type[BaseModel], name: str) -> dict:
    extra = section.model_fields[name].json_schema_extra
    return extra if isinstance(extra, dict) else {}


def effect(section: type[BaseModel], name: str) -> str | None:
    """A field's mark (SPEED, SELECTION) or None: it changes what the stage writes."""
    return _extra(section, name).get("effect")  # type: ignore[return-value]


def fingerprint_settings(section: BaseModel, leave_out: tuple[str, ...] = (SPEED,)) -> dict:
    """The section's settings that change what its stage writes, as they enter the stage's fingerprint."""
    cls = type(section)
    dropped = {n for n in cls.model_fields if effect(cls, n) in leave_out}
    dropped |= {
        n
        for n, f in cls.model_fields.items()
        if _extra(cls, n).get("added") and getattr(section, n) == f.get_default(call_default_factory=True)
    }
    return section.model_dump(exclude=dropped)


def fingerprint(*parts: Any) -> str:
    """Stable short hash of JSON-able parts (config sections, prompts, upstream fingerprints)."""
    blob = json.dumps([p.model_dump() if isinstance(p, BaseModel) else p for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
