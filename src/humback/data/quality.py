"""Optional document-quality filters from the field, run on each segment after humback's own filters.

They come from datatrove (`pip install 'humback[quality]'`: datatrove, with spaCy for its English word
tokenizer), each with its published defaults:
- `gopher_repetition`, `gopher_quality`: Rae et al. 2021 (Gopher, arXiv 2112.11446, App. A);
- `c4`: Raffel et al. 2020 (C4, arXiv 1910.10683, §2.2): lines without terminal punctuation are removed,
  then the text is dropped for code braces, "lorem ipsum", or fewer than five sentences;
- `fineweb`: Penedo et al. 2024 (FineWeb, arXiv 2406.17557, §3.3).

They were written for whole documents; on 600-3,000-character segments of real pages they drop far more
main text than boilerplate (BENCHMARKS.md, web_extract), so none is on by default. Each drop is counted
in the funnel as `dropped_<name>`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from humback.config import ConfigError


def quality_filters(names: Sequence[str], lang: str | None) -> list[tuple[str, Callable[[str], str | None]]]:
    """(name, check) for each named filter; check(text) returns the text to keep (the C4 filter removes
    lines) or None to drop it."""
    if not names:
        return []
    try:
        from datatrove.data import Document
        from datatrove.pipeline import filters
    except ImportError as e:
        raise ConfigError(
            f"segment.quality_filters {list(names)} need datatrove and spaCy: "
            "pip install 'humback[quality]' (or set segment.quality_filters: [])"
        ) from e
    language = lang or "en"
    make = {
        "gopher_repetition": lambda: filters.GopherRepetitionFilter(language=language),
        "gopher_quality": lambda: filters.GopherQualityFilter(language=language),
        "c4": lambda: filters.C4QualityFilter(language=language),
        "fineweb": lambda: filters.FineWebQualityFilter(language=language),
    }
    out = []
    for name in names:
        flt = make[name]()

        def check(text: str, flt=flt) -> str | None:
            doc = Document(text=text, id="")
            verdict = flt.filter(doc)
            keep = verdict[0] if isinstance(verdict, tuple) else bool(verdict)
            return doc.text if keep else None

        out.append((name, check))
    return out
