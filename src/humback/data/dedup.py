"""Exact and near-duplicate detection over everything kept so far: used by the segment stage (segments)
and by curation's selection (instructions)."""

from __future__ import annotations

import re

import xxhash


class Deduplicator:
    """Exact (normalised text hash) and near-duplicate (MinHash LSH over word 5-grams) detection across
    everything kept so far.

    Signatures come from datasketch's MinHash and the band layout (b bands of r rows) from its
    MinHashLSH for the threshold. The index itself keeps one 64-bit hash per band in a set, not
    datasketch's key lists: dedup only asks "was anything like this kept?", never "which one?", and
    on the 1 GB benchmark corpus (433k kept) the stage peaked at 413 MB, against 1,087 MB with the keyed
    index, with the same decisions.
    """

    def __init__(
        self, near_threshold: float | None = 0.8, num_perm: int = 64, char_ngrams: int | None = None
    ):
        # char_ngrams: shingle by character n-grams instead (short texts such as instructions, where a
        # few words give too few word 5-grams to compare).
        self.char_ngrams = char_ngrams
        self.exact: set[int] = set()
        self.bands: list[set[int]] = []
        if near_threshold is not None:
            from datasketch import MinHash, MinHashLSH

            layout = MinHashLSH(threshold=near_threshold, num_perm=num_perm)
            self.rows_per_band = layout.r
            self.bands = [set() for _ in range(layout.b)]
            # One set of permutations and a fast 32-bit hash for every signature: building permutations
            # and SHA-1 per shingle were two thirds of the stage's time.
            self._template = MinHash(num_perm=num_perm, seed=1, hashfunc=xxhash.xxh32_intdigest)

    def _signature(self, norm: str):
        from datasketch import MinHash

        t = self._template
        mh = MinHash(
            num_perm=t.num_perm,
            seed=t.seed,
            hashfunc=t.hashfunc,
            permutations=t.permutations,
            scheme=t.scheme,
        )
        if self.char_ngrams:
            n = self.char_ngrams
            shingles = {norm[i : i + n].encode() for i in range(max(1, len(norm) - n + 1))}
        else:
            words = norm.split()
            shingles = {" ".join(words[i : i + 5]).encode() for i in range(max(1, len(words) - 4))}
        mh.update_batch(list(shingles))
        return mh.hashvalues

    def check_and_add(self, text: str) -> str | None:
        norm = re.sub(r"\W+", " ", text.lower()).strip()
        digest = xxhash.xxh3_64_intdigest(norm.encode())
        if digest in self.exact:
            return "duplicate"
        self.exact.add(digest)
        if self.bands:
            values, r = self._signature(norm), self.rows_per_band
            keys = [
                xxhash.xxh3_64_intdigest(values[i * r : (i + 1) * r].tobytes())
                for i in range(len(self.bands))
            ]
            if any(k in band for k, band in zip(keys, self.bands)):
                return "near_duplicate"
            for k, band in zip(keys, self.bands):
                band.add(k)
        return None
