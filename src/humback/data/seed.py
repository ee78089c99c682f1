"""Seed pairs from an Open Assistant (oasst1/oasst2) tree export.

Rules (paper §2.1, METHOD.md §2): only the first turn of a conversation tree, i.e. the root prompter
message and an assistant reply *to it*; roles checked; the language asked for; the rank-0 reply; deleted,
synthetic and review-failed messages dropped. The paper does not say how its 3,200 were chosen among the
eligible pairs, so the rule here is explicit and recorded: order by a seeded hash of the tree id, take
the first N.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import statistics
from collections import Counter
from importlib import resources
from pathlib import Path

from humback.records import RecordError, write_jsonl

SELECTION_RULE = "eligible pairs ordered by sha256(seed:tree_id), first max_seed kept"


def demo_seed_path() -> Path:
    return Path(str(resources.files("humback") / "resources" / "demo" / "seed.trees.jsonl"))


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _bad(msg: dict) -> str | None:
    if msg.get("deleted"):
        return "deleted"
    if msg.get("synthetic"):
        return "synthetic"
    if msg.get("review_result") is False:
        return "review_failed"
    return None


def first_turn_pair(tree: dict, lang: str) -> tuple[dict | None, str]:
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
        },
    }
    return pair, "kept"


def _length_stats(values: list[int]) -> dict:
    if not values:
        return {"mean": 0.0, "std": 0.0}
    return {"mean": round(statistics.fmean(values), 1), "std": round(statistics.pstdev(values), 1)}


def seed(source: str | Path, out: str | Path, lang: str = "en", max_seed: int = 3200, seed_value: int = 0) -> dict:
    """Write seed pairs from an oasst tree export to `out`; return the stage stats."""
    path = demo_seed_path() if str(source) == "demo" else Path(source)
    if not path.is_file():
        raise RecordError(f"seed source {path} not found: give an oasst tree export (*.trees.jsonl[.gz]) or 'demo'")
    reasons: Counter = Counter()
    pairs = []
    with _open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                tree = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            pair, reason = first_turn_pair(tree, lang)
            reasons[reason] += 1
            if pair:
                pairs.append(pair)
    if not pairs:
        raise RecordError(f"{path}: no seed pair passed the rules (drops: {dict(reasons)}); check `data.lang`")

    def order(p):
        return hashlib.sha256(f"{seed_value}:{p['meta']['tree_id']}".encode()).hexdigest()

    kept = sorted(pairs, key=order)[:max_seed]
    reasons["over_max_seed"] = len(pairs) - len(kept)
    write_jsonl(out, kept)
    return {
        "rows": len(kept),
        "trees": sum(reasons.values()) - reasons["over_max_seed"],
        "drops": {k: v for k, v in sorted(reasons.items()) if k != "kept" and v},
        "selection": SELECTION_RULE,
        "instruction_chars": _length_stats([len(p["instruction"]) for p in kept]),
        "response_chars": _length_stats([len(p["response"]) for p in kept]),
    }
