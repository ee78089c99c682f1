"""Seed pairs from Open Assistant (oasst1/oasst2) or from any instruction/response file.

oasst rules (paper §2.1, docs/method.md §2): only the first turn of a conversation tree, i.e. the root
prompter
message and an assistant reply *to it*; roles checked; the language asked for; the rank-0 reply; deleted,
synthetic and review-failed messages dropped; optionally a minimum 'quality' label. The paper does not
say how its 3,200 were chosen among the eligible pairs, so the rule here is explicit and recorded
(SELECTION_RULE). Sources: the hub id (`OpenAssistant/oasst1`, through `datasets`), a tree export
(`*.trees.jsonl[.gz]`), a flat message table (JSONL/Parquet with message_id, parent_id, role ...), or
generic pairs (JSONL, JSON, CSV, Parquet) in alpaca, sharegpt or messages style, or with named fields.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from importlib import resources
from itertools import islice
from pathlib import Path

from humback.config import SeedConfig
from humback.data.readers import Problems, read_rows
from humback.hub import is_hub_id
from humback.records import RecordError, write_jsonl
from humback.stats import LengthStats, SeedStats

SELECTION_RULE = (
    "eligible pairs ordered by reply 'quality' label (highest first, missing = 0), then by "
    "sha256(seed:tree_id); the first max_seed kept"
)
MESSAGE_COLUMNS = {"message_id", "parent_id", "role", "text"}


def demo_seed_path() -> Path:
    return Path(str(resources.files("humback") / "resources" / "demo" / "seed.trees.jsonl"))


def _bad(msg: dict) -> str | None:
    if msg.get("deleted"):
        return "deleted"
    if msg.get("synthetic"):
        return "synthetic"
    if msg.get("review_result") is False:
        return "review_failed"
    return None


def label(msg: dict, name: str) -> float | None:
    labels = msg.get("labels") or {}
    names, values = labels.get("name") or [], labels.get("value") or []
    return next((float(v) for n, v in zip(names, values) if n == name), None)


def first_turn_pair(tree: dict, lang: str, min_quality: float | None = None) -> tuple[dict | None, str]:
    """The (prompt, rank-0 reply) of one tree, or None and the reason it has none."""
    root = tree.get("prompt")
    if not isinstance(root, dict):
        return None, "no_prompt"
    if root.get("role") != "prompter":
        return None, "root_not_prompter"
    if (root.get("lang") or "") != lang:
        return None, "language"
    if reason := _bad(root):
        return None, f"prompt_{reason}"
    replies = [r for r in root.get("replies") or [] if r.get("role") == "assistant"]
    if not replies:
        return None, "no_assistant_reply"
    best = [r for r in replies if r.get("rank") == 0]
    if not best:
        return None, "no_rank0_reply"
    reply = best[0]
    if reason := _bad(reply):
        return None, f"reply_{reason}"
    quality = label(reply, "quality")
    if min_quality is not None and (quality is None or quality < min_quality):
        return None, "low_quality"
    instruction, response = (root.get("text") or "").strip(), (reply.get("text") or "").strip()
    if not instruction or not response:
        return None, "empty_text"
    pair = {
        "id": reply["message_id"],
        "instruction": instruction,
        "response": response,
        "source": "oasst",
        "meta": {
            "tree_id": tree.get("message_tree_id", root.get("message_id")),
            "prompt_id": root.get("message_id"),
            "reply_id": reply.get("message_id"),
            "lang": lang,
            "quality": quality,
        },
    }
    return pair, "kept"


def trees_from_messages(rows: Iterator[dict]) -> Iterator[dict]:
    """Rebuild tree-export form from a flat oasst message table (the hub dataset's form)."""
    by_tree: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_tree[row.get("message_tree_id") or row["message_id"]].append(dict(row))
    for tree_id, msgs in by_tree.items():
        nodes = {m["message_id"]: {**m, "replies": []} for m in msgs}
        root = None
        for node in nodes.values():
            parent = node.get("parent_id")
            if parent is None:
                root = node
            elif parent in nodes:
                nodes[parent]["replies"].append(node)
        if root is not None:
            yield {"message_tree_id": tree_id, "prompt": root}


def _pair_from_row(row: dict, cfg: SeedConfig) -> tuple[str, str] | None:
    """(instruction, response) of a generic row: named fields, alpaca, sharegpt or messages style."""
    if cfg.instruction_field or cfg.response_field:
        ins, res = row.get(cfg.instruction_field or "instruction"), row.get(cfg.response_field or "response")
        return (ins, res) if isinstance(ins, str) and isinstance(res, str) else None
    if "instruction" in row and ("output" in row or "response" in row):  # alpaca (instruction, input, output)
        ins, extra = row["instruction"], row.get("input")
        if isinstance(ins, str) and isinstance(extra, str) and extra:
            ins += f"\n\n{extra}"
        return ins, row.get("output", row.get("response"))
    if "prompt" in row and isinstance(row["prompt"], str) and "response" in row:
        return row["prompt"], row["response"]
    turns = row.get("conversations") or row.get("messages")
    if isinstance(turns, list):  # sharegpt {from, value} or chat {role, content}: the first user turn + reply
        norm = [
            (t.get("from") or t.get("role"), t.get("value") or t.get("content"))
            for t in turns
            if isinstance(t, dict)
        ]
        norm = [(r, c) for r, c in norm if r not in ("system",)]
        if len(norm) >= 2 and norm[0][0] in ("human", "user") and norm[1][0] in ("gpt", "assistant"):
            return norm[0][1], norm[1][1]
    return None


def _generic_pairs(
    rows: Iterator[tuple[str, dict]], cfg: SeedConfig, reasons: Counter, problems: Problems
) -> list[dict]:
    pairs = []
    seen: dict[str, str] = {}
    for where, row in rows:
        if not isinstance(row, dict):
            problems("not_an_object", where, "expected an object per row")
            continue
        found = _pair_from_row(row, cfg)
        if found is None:
            problems(
                "unrecognised_row",
                where,
                "no instruction/response found (set seed.instruction_field and "
                "seed.response_field, or use alpaca, sharegpt or messages style)",
            )
            reasons["unrecognised_row"] += 1
            continue
        # null, numbers or lists where text belongs: counted as empty, never turned into text
        ins, res = (x.strip() if isinstance(x, str) else "" for x in found)
        if not ins or not res:
            reasons["empty_text"] += 1
            continue
        pid = str(row.get("id") or hashlib.sha256(f"{ins}\x00{res}".encode()).hexdigest()[:16])
        if pid in seen:
            problems("duplicate_id", where, f"id {pid!r} already used at {seen[pid]}; ids must be unique")
            continue
        seen[pid] = where
        reasons["kept"] += 1
        pairs.append(
            {
                "id": pid,
                "instruction": ins,
                "response": res,
                "source": "pairs",
                "meta": {"tree_id": pid, "location": where},
            }
        )
    return pairs


def _length_stats(values: list[int]) -> LengthStats:
    if not values:
        return {"mean": 0.0, "std": 0.0}
    return {"mean": round(statistics.fmean(values), 1), "std": round(statistics.pstdev(values), 1)}


class Counted:
    """An iterator over at most `limit` rows that counts those it handed out (a sample's rows read)."""

    def __init__(self, rows: Iterator, limit: int | None = None):
        self.source, self.n = rows, 0
        self.rows = islice(rows, limit)

    def __iter__(self):
        return self

    def __next__(self):
        row = next(self.rows)
        self.n += 1
        return row


def _load(
    source: str, cfg: SeedConfig, reasons: Counter, problems: Problems, limit: int | None = None
) -> tuple[list[dict], str, Counted]:
    """The eligible pairs of `source`, its format, and the rows read (the first `limit` for a sample)."""
    path = demo_seed_path() if source == "demo" else Path(source)
    if not path.exists():
        if is_hub_id(source):
            from datasets import load_dataset

            try:  # a sample streams the table's first rows; the stage reads it whole
                table = load_dataset(source, split=cfg.split, streaming=limit is not None)
            except Exception as e:  # datasets raises many types for unreachable or unknown datasets
                raise RecordError(f"cannot load hub dataset '{source}': {e}") from e
            read = Counted(iter(table), limit)
            return _oasst_pairs(trees_from_messages(read), cfg, reasons), "oasst-messages", read
        raise RecordError(
            f"seed source {path} not found: give an oasst tree export (*.trees.jsonl[.gz]), a message "
            "table, a pairs file (JSONL/JSON/CSV/Parquet), a hub id such as OpenAssistant/oasst1, or 'demo'"
        )
    rows = read = Counted(read_rows(path, problems, cfg.max_record_bytes), limit)
    fmt = cfg.format
    if fmt == "auto":
        first = next(rows, None)
        if first is None:
            raise RecordError(f"seed source {path} is empty")
        keys = set(first[1]) if isinstance(first[1], dict) else set()
        fmt = (
            "oasst-trees"
            if "prompt" in keys and isinstance(first[1]["prompt"], dict)
            else ("oasst-messages" if MESSAGE_COLUMNS <= keys else "pairs")
        )
        rows = _chain(first, rows)
    if fmt == "oasst-trees":
        return _oasst_pairs((row for _, row in rows), cfg, reasons), fmt, read
    if fmt == "oasst-messages":
        return _oasst_pairs(trees_from_messages(row for _, row in rows), cfg, reasons), fmt, read
    return _generic_pairs(rows, cfg, reasons, problems), fmt, read


def _chain(first, rest):
    yield first
    yield from rest


def _oasst_pairs(trees, cfg: SeedConfig, reasons: Counter) -> list[dict]:
    pairs = []
    for tree in trees:
        pair, reason = first_turn_pair(tree, cfg.lang, cfg.min_quality)
        reasons[reason] += 1
        if pair:
            pairs.append(pair)
    return pairs


def seed_pairs(
    source: str | Path,
    out: str | Path,
    cfg: SeedConfig | None = None,
    *,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> SeedStats:
    """Write the seed pairs of `source` (cfg.source in a run) to `out`; return the stage stats (kept, drop
    reasons, lengths, the rule). `seed` is the random seed of the rule choosing among the pairs kept."""
    cfg = cfg or SeedConfig()
    reasons: Counter = Counter()
    problems = Problems(strict=cfg.strict, log=log, stage="seed")
    pairs, fmt, _ = _load(str(source), cfg, reasons, problems)
    if not pairs:
        raise RecordError(
            f"{source}: no seed pair passed the rules (drops: {dict(reasons)}); check seed.lang "
            "and seed.format"
        )

    def order(p):
        quality = (p["meta"].get("quality") or 0.0) if p["source"] == "oasst" else 0.0
        return -quality, hashlib.sha256(f"{seed}:{p['meta']['tree_id']}".encode()).hexdigest()

    kept = sorted(pairs, key=order)[: cfg.max_pairs]
    reasons["over_max_seed"] = len(pairs) - len(kept)
    write_jsonl(out, kept)
    return {
        "rows": len(kept),
        "format": fmt,
        "read": sum(reasons.values()) - reasons["over_max_seed"],
        "drops": {k: v for k, v in sorted(reasons.items()) if k != "kept" and v},
        "bad_input": dict(problems.counts),
        "selection": SELECTION_RULE,
        "instruction_chars": _length_stats([len(p["instruction"]) for p in kept]),
        "response_chars": _length_stats([len(p["response"]) for p in kept]),
    }


def sample_pairs(source: str, cfg: SeedConfig, rows: int) -> tuple[list[dict], int, bool]:
    """The eligible pairs among the first `rows` rows of `source` (by the stage's rules), the rows read,
    and whether that was the whole source: what `humback plan` extrapolates from."""
    problems = Problems(strict=False, log=lambda _: None, stage="seed")
    pairs, _, read = _load(str(source), cfg, Counter(), problems, limit=rows)
    whole = read.n < rows or next(read.source, None) is None
    return pairs, read.n, whole
