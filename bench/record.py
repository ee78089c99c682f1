"""The result file every benchmark writes: bench/results/<name>.json with the fields BENCHMARKS.md names."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import date
from pathlib import Path


def cpu_flags() -> str:
    """The vector extensions CPU figures depend on (they differ between machines of one kind)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "flags unknown"
    flags = set(
        next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    )
    shown = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return " ".join(shown) or "no AVX2"


def write_record(
    out: str | Path, name: str, unit: str, baseline: float, candidate: float, ratio: float, **extra
) -> dict:
    record = {
        "name": name,
        "unit": unit,
        "baseline": baseline,
        "candidate": candidate,
        "ratio": ratio,
        **extra,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({cpu_flags()}), Python"
        f" {platform.python_version()}",
        "date": date.today().isoformat(),
        "command": "python " + " ".join(sys.argv),
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    return record
