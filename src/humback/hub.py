"""Hub ids versus local paths: one rule for models, seeds and corpora.

A name like `owner/name` that is not on disk is a hub id (models, datasets), unless its parent folder
exists here: `runs/m0` with `runs/` present is a mistyped local path, and sending it to the hub would
turn a typo into a confusing download error.
"""

from __future__ import annotations

import re
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(name: str) -> bool:
    """`name` has a hub id's shape (owner/name) and is not a path."""
    return bool(HUB_ID.match(name)) and not name.startswith((".", "/"))


def is_hub_id(name: str) -> bool:
    """`name` is meant for the hub: a hub id's shape, not on disk, and not a mistyped local path."""
    path = Path(name).expanduser()
    return looks_like_hub_id(name) and not path.exists() and not path.parent.is_dir()
