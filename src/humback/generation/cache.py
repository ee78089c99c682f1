"""A persistent response cache in front of any generator.

Keyed by (generator fingerprint, request kind, messages, sampling params, seed) — for next-token
probabilities by (fingerprint, messages, continuation, choices), for reply scores by (fingerprint,
messages, reply) — so rerunning a stage, forcing it, or
changing only a selection setting never asks the model the same question twice. SQLite in WAL mode:
each batch of replies is one transaction, so a kill loses at most the batch in flight.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from humback.errors import EnvironmentFault, HumbackError
from humback.files import ensure_dir, refuse_link
from humback.generation.base import GenerationError, Generator, SamplingParams, request_seeds


class CacheError(HumbackError):
    """The response cache file is not a readable SQLite database (corrupt, truncated, or not humback's)."""


class CacheUnavailable(EnvironmentFault):
    """The response cache cannot be used right now (locked too long, disk full, an I/O error)."""


@contextmanager
def _sqlite(path: Path) -> Iterator[None]:
    """SQLite's errors as humback's, naming the file: corruption is the file's (exit 2: move it aside, the
    run recomputes what it held), a lock, a full disk or an I/O error is the machine's (exit 3: rerun)."""
    try:
        yield
    except sqlite3.OperationalError as e:
        raise CacheUnavailable(f"response cache {path}: {e}") from None
    except sqlite3.DatabaseError as e:
        raise CacheError(
            f"response cache {path} is damaged ({e}): move it aside (e.g. mv {path} {path}.bad) and"
            " rerun; the replies it held are asked again, everything else is kept"
        ) from None


class ResponseCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        ensure_dir(self.path.parent)
        for p in (
            self.path,
            self.path.with_name(self.path.name + "-wal"),
            self.path.with_name(self.path.name + "-shm"),
        ):
            refuse_link(p)  # SQLite would write through a planted link
        with _sqlite(self.path):
            self.db = sqlite3.connect(self.path, timeout=60)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.execute("SELECT key, value FROM replies LIMIT 1").fetchall()
            self.db.commit()
        self.hits = self.misses = 0

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, object]:
        found: dict[str, object] = {}
        for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            with _sqlite(self.path):
                rows = self.db.execute(
                    f"SELECT key, value FROM replies WHERE key IN ({marks})", part
                ).fetchall()
            for k, v in rows:
                try:
                    found[k] = json.loads(v)
                except (TypeError, ValueError, RecursionError):
                    continue  # a damaged entry: asked again, and replaced
        self.hits += len(found)
        self.misses += len(set(keys)) - len(found)
        return found

    def put_many(self, items: dict[str, object]) -> None:
        with _sqlite(self.path), self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO replies VALUES (?, ?)",
                [(k, json.dumps(v, ensure_ascii=False)) for k, v in items.items()],
            )


class CachedGenerator:
    """The Generator protocol, answering from the cache first and storing every new reply."""

    def __init__(self, inner: Generator, cache: ResponseCache):
        self.inner, self.cache = inner, cache
        self.model, self.fingerprint, self.chunk_size = inner.model, inner.fingerprint, inner.chunk_size
        self.backend = inner.backend

    def generate(
        self, prompts: list[list[dict]], params: SamplingParams, seeds: Sequence[int] | None = None
    ) -> list[str]:
        seeds = request_seeds(params, seeds, len(prompts))
        shared = {k: v for k, v in params.as_dict().items() if k != "seed"}
        keys = [self.cache.key(self.fingerprint, "generate", p, shared, s) for p, s in zip(prompts, seeds)]
        found = self.cache.get_many(keys)
        miss = [i for i, k in enumerate(keys) if k not in found]
        if miss:
            try:
                texts = self.inner.generate([prompts[i] for i in miss], params, [seeds[i] for i in miss])
            except GenerationError as e:
                # Keep what did finish: the rerun starts from there.
                self.cache.put_many({keys[miss[j]]: text for j, text in e.done.items() if text})
                raise
            new = {keys[i]: text for i, text in zip(miss, texts)}
            # An empty reply is more often a server hiccup than an answer: it is asked again next time.
            self.cache.put_many({k: text for k, text in new.items() if text})
            found.update(new)
        return [found[k] for k in keys]  # type: ignore[misc]

    def _lookup(self, keys: list[str], compute) -> list:
        """Cached values for `keys`; `compute(miss_indices)` supplies the missing ones, which are stored."""
        found = self.cache.get_many(keys)
        miss = [i for i, k in enumerate(keys) if k not in found]
        if miss:
            new = dict(zip((keys[i] for i in miss), compute(miss)))
            self.cache.put_many(new)
            found.update(new)
        return [found[k] for k in keys]

    def next_token_probs(
        self, prompts: list[list[dict]], continuations: list[str], choices: list[str]
    ) -> list[dict[str, float]]:
        keys = [
            self.cache.key(self.fingerprint, "next_token_probs", p, c, choices)
            for p, c in zip(prompts, continuations)
        ]
        return self._lookup(
            keys,
            lambda miss: self.inner.next_token_probs(
                [prompts[i] for i in miss], [continuations[i] for i in miss], choices
            ),
        )

    def reply_logprobs(self, prompts: list[list[dict]], replies: list[str]) -> list[dict]:
        keys = [self.cache.key(self.fingerprint, "reply_logprobs", p, r) for p, r in zip(prompts, replies)]
        return self._lookup(
            keys,
            lambda miss: self.inner.reply_logprobs([prompts[i] for i in miss], [replies[i] for i in miss]),
        )
