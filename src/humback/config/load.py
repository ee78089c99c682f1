"""Reading a recipe: one YAML file, typed and validated once, with `--set key=value` overrides. Every
problem is reported together, each with the key's dotted path and what is accepted; a key of an earlier
version is named with its new place."""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from humback.config.base import ConfigError
from humback.config.sections import RunConfig

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
