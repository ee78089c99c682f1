"""Command-line flags derived from the config's own fields: each subcommand's flags set config keys
(`--max-chars` sets segment.max_chars), with the field's type, choices and description, so the CLI never
declares a setting a second time."""

from __future__ import annotations

from types import UnionType
from typing import Literal, Union, get_args, get_origin

from humback.config import BACKENDS

KEY = "config:"  # argparse dests of flags derived from config fields: "config:<dotted key>"


def flag_type(annotation) -> tuple[type | None, tuple | None]:
    """The argparse type and choices of a config field; (None, None) for a list, a mapping and the like."""
    args = (
        [a for a in get_args(annotation) if a is not type(None)]
        if get_origin(annotation) in (Union, UnionType)
        else [annotation]
    )
    if len(args) != 1:
        return None, None
    kind = args[0]
    if get_origin(kind) is Literal:
        choices = get_args(kind)
        return type(choices[0]), choices
    return (kind, None) if kind in (int, float, str, bool) else (None, None)


def section_flags(
    sp, section: str, names: list[str] | None = None, rename: dict[str, str] | None = None
) -> None:
    """A flag per scalar field of config section `section` ('' = the top level), its type, choices and help
    taken from the field: `--max-chars` sets segment.max_chars. Lists and mappings are set with --set."""
    from humback.config import RunConfig

    model = RunConfig
    for part in filter(None, section.split(".")):
        model = model.model_fields[part].annotation
    for name, field in model.model_fields.items():
        if names is not None and name not in names:
            continue
        kind, choices = flag_type(field.annotation)
        if kind is None or (kind is bool and field.default is not False):
            continue
        flag = "--" + (rename or {}).get(name, name).replace("_", "-")
        key = f"{section}.{name}" if section else name
        text = f"{field.description or ''} [{key}]".replace("%", "%%")
        if kind is bool:
            sp.add_argument(flag, dest=KEY + key, action="store_const", const=True, help=text)
        else:
            sp.add_argument(
                flag,
                dest=KEY + key,
                type=kind,
                choices=choices,
                metavar=None if choices else name.upper(),
                help=text,
            )


def role_flags(sp, role: str, flag: str) -> None:
    """`--<flag>` names the role's model; `--<flag>-backend` and `--<flag>-base-url` its engine."""
    sp.add_argument(
        f"--{flag}",
        dest=f"{KEY}generation.{role}.model",
        metavar="MODEL",
        help=f"the {role}'s model [generation.{role}.model]",
    )
    sp.add_argument(
        f"--{flag}-backend",
        dest=f"{KEY}generation.{role}.backend",
        choices=BACKENDS,
        help=f"the {role}'s backend [generation.{role}.backend]",
    )
    sp.add_argument(
        f"--{flag}-base-url",
        dest=f"{KEY}generation.{role}.base_url",
        metavar="URL",
        help=f"the {role}'s OpenAI-compatible server [generation.{role}.base_url]",
    )
