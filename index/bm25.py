"""BM25 over chunk texts, in shards, scored with the statistics of the whole library.

An ingest adds a shard holding only its new chunks instead of rebuilding; a removal masks
its chunks (``dead`` ids) without touching a shard. A search scores each shard with GLOBAL
statistics (document frequencies, document count and average length over the live chunks
of all shards), so its scores are those of one index over the live chunks, up to float
error: the BM25 of bm25s's default method ("lucene", k1 = 1.5, b = 0.75; the tests compare
with bm25s). bm25s itself bakes its index's own statistics into precomputed scores, which
shards built at different times cannot share, so the shards keep term frequencies and the
scoring is done here. Words come from ``core.text.tokenize``.

Shards are compacted (``compacted``: merged, masked rows dropped) by the writer at the end
of its work, past ``index.bm25_max_shards`` shards or MAX_DEAD of the rows masked.

Every object here is immutable once made: a change returns a new :class:`BM25Index`, so a
search in another thread never sees a half-made one.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.text import tokenize

# bm25s sets its own logger to DEBUG on import, which would print on the user's terminal.
logging.getLogger("bm25s").setLevel(logging.WARNING)
__all__ = ["BM25Index", "Shard", "ShardBuilder", "tokenize"]

K1, B = 1.5, 0.75
MAX_DEAD = 0.2  # masked share of all rows beyond which the writer merges every shard
ARRAYS = ("ids", "doc_len", "indptr", "rows", "tf")


def new_name() -> str:
    return f"bm25-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True, eq=False)
class Shard:
    """Term frequencies of some chunks, by column (term): the rows (chunks) holding term
    ``terms[c]`` are ``rows[indptr[c]:indptr[c + 1]]`` with counts ``tf[...]``."""

    name: str
    ids: np.ndarray  # chunk id of each row, ascending
    doc_len: np.ndarray  # tokens in each row
    terms: list[str]
    indptr: np.ndarray
    rows: np.ndarray
    tf: np.ndarray
    vocab: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.vocab:
            self.vocab.update((t, i) for i, t in enumerate(self.terms))

    def __len__(self) -> int:
        return len(self.ids)

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        col = self.vocab.get(term)
        if col is None:
            return None
        start, end = int(self.indptr[col]), int(self.indptr[col + 1])
        return self.rows[start:end], self.tf[start:end]

    def save(self, directory: Path) -> None:
        """Write into ``directory`` (the caller renames it into place)."""
        for name in ARRAYS:
            np.save(directory / f"{name}.npy", getattr(self, name))
        (directory / "terms.json").write_text(json.dumps(self.terms))

    @classmethod
    def load(cls, directory: Path) -> Shard:
        """Raises OSError or ValueError when a file is missing, truncated or inconsistent."""
        arrays = {n: np.load(directory / f"{n}.npy", mmap_mode="r") for n in ARRAYS}
        terms = json.loads((directory / "terms.json").read_text())
        shard = cls(directory.name, terms=terms, **arrays)
        if (len(shard.ids) != len(shard.doc_len) or len(shard.indptr) != len(terms) + 1
                or len(shard.rows) != len(shard.tf) or int(shard.indptr[-1]) != len(shard.rows)):
            raise ValueError(f"{directory}: the BM25 shard's arrays do not fit together")
        return shard


class ShardBuilder:
    """Collects (chunk id, text) rows, tokenised as they come, into one :class:`Shard`."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.ids: list[np.ndarray] = []
        self.lens: list[int] = []
        self.cols: list[np.ndarray] = []
        self.tfs: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.lens)

    def add(self, ids: Iterable[int], texts: Iterable[str]) -> None:
        ids = np.fromiter(ids, dtype=np.int64)
        for text in texts:
            words = tokenize(text)
            counts = Counter(words)
            self.lens.append(len(words))
            self.cols.append(np.fromiter((self.vocab.setdefault(w, len(self.vocab))
                                          for w in counts), dtype=np.int32, count=len(counts)))
            self.tfs.append(np.fromiter(counts.values(), dtype=np.float32, count=len(counts)))
        self.ids.append(ids)
        if sum(len(i) for i in self.ids) != len(self.lens):
            raise ValueError("one text per chunk id")

    def build(self) -> Shard:
        rows = np.repeat(np.arange(len(self.lens), dtype=np.int32),
                         [len(c) for c in self.cols])
        cols = np.concatenate(self.cols) if self.cols else np.zeros(0, dtype=np.int32)
        tf = np.concatenate(self.tfs) if self.tfs else np.zeros(0, dtype=np.float32)
        ids = np.concatenate(self.ids) if self.ids else np.zeros(0, dtype=np.int64)
        return by_columns(new_name(), ids, np.asarray(self.lens, dtype=np.int32),
                          list(self.vocab), cols, rows, tf)


def by_columns(name: str, ids: np.ndarray, doc_len: np.ndarray, terms: list[str],
               cols: np.ndarray, rows: np.ndarray, tf: np.ndarray) -> Shard:
    """A shard from postings given as (column, row, count) triples in row order."""
    if len(ids) and np.any(np.diff(ids) <= 0):
        raise ValueError("chunk ids must ascend")
    order = np.argsort(cols, kind="stable")  # rows stay ascending within a column
    indptr = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(cols, minlength=len(terms)), out=indptr[1:])
    return Shard(name, ids.astype(np.int64), doc_len.astype(np.int32), terms, indptr,
                 rows[order].astype(np.int32), tf[order].astype(np.float32))


def merge(shards: list[Shard], dead: np.ndarray) -> Shard:
    """One shard holding the live rows of ``shards``, in chunk id order."""
    vocab: dict[str, int] = {}
    ids, lens, cols, rows, tfs = [], [], [], [], []
    offset = 0
    for s in shards:
        live = ~np.isin(s.ids, dead)
        new_row = np.cumsum(live, dtype=np.int64) - 1 + offset
        col_map = np.fromiter((vocab.setdefault(t, len(vocab)) for t in s.terms),
                              dtype=np.int32, count=len(s.terms))
        keep = live[s.rows]
        ids.append(s.ids[live])
        lens.append(s.doc_len[live])
        cols.append(np.repeat(col_map, np.diff(s.indptr))[keep])
        rows.append(new_row[s.rows[keep]])
        tfs.append(np.asarray(s.tf)[keep])
        offset += int(live.sum())
    all_ids = np.concatenate(ids)
    order = np.argsort(all_ids, kind="stable")  # shards merged later may span others' ids
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return by_columns(new_name(), all_ids[order], np.concatenate(lens)[order], list(vocab),
                      np.concatenate(cols), rank[np.concatenate(rows)], np.concatenate(tfs))


class BM25Index:
    """Shards plus the ids masked out of them; searched with global statistics."""

    def __init__(self, shards: tuple[Shard, ...] = (), dead: np.ndarray | None = None) -> None:
        self.shards = tuple(s for s in shards if len(s))
        dead = np.zeros(0, dtype=np.int64) if dead is None else np.asarray(dead, np.int64)
        self._live = [~np.isin(s.ids, dead) if len(dead) else None for s in self.shards]
        held = [s.ids[~live] for s, live in zip(self.shards, self._live, strict=True)
                if live is not None]
        self.dead = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
        self.rows = sum(len(s) for s in self.shards)
        self.n_docs = self.rows - len(self.dead)
        total = sum(float(np.sum(s.doc_len if live is None else s.doc_len[live]))
                    for s, live in zip(self.shards, self._live, strict=True))
        self.avgdl = total / self.n_docs if self.n_docs else 0.0
        self.max_id = max((int(s.ids[-1]) for s in self.shards), default=0)

    def __len__(self) -> int:
        return self.n_docs

    # -- changes (each returns a new index) --------------------------------------------
    def with_shard(self, shard: Shard) -> BM25Index:
        return BM25Index((*self.shards, shard), self.dead)

    def keeping(self, live_ids: np.ndarray) -> BM25Index:
        """This index with every row whose chunk is not in ``live_ids`` masked."""
        if not self.shards:
            return self
        every = np.concatenate([s.ids for s in self.shards])
        return BM25Index(self.shards, every[~np.isin(every, live_ids)])

    def compacted(self, max_shards: int) -> BM25Index | None:
        """Merged shards, or None when no merge is due: every shard when MAX_DEAD of the
        rows are masked; past ``max_shards`` shards, all but the largest (all of them when
        those together would outgrow it, so merges stay about logarithmic)."""
        if self.rows and len(self.dead) > MAX_DEAD * self.rows:
            return BM25Index((merge(list(self.shards), self.dead),))
        if len(self.shards) <= max_shards:
            return None
        largest = max(self.shards, key=len)
        rest = [s for s in self.shards if s is not largest]
        if sum(len(s) for s in rest) >= len(largest):
            return BM25Index((merge(list(self.shards), self.dead),))
        return BM25Index((largest, merge(rest, self.dead)), self.dead)

    # -- searching ---------------------------------------------------------------------
    def search(self, query: str, k: int,
               allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top-k (chunk id, BM25 score > 0); ``allowed`` restricts to chunk ids."""
        if k <= 0 or self.n_docs == 0:
            return []
        counts = Counter(tokenize(query))
        found, df = self._postings(list(counts))
        idf = self._idf(df)
        ids, scores = [], []
        for shard, hits in zip(self.shards, found, strict=True):
            if hits:
                got = self._score(shard, hits, counts, idf, allowed)
                ids.append(got[0])
                scores.append(got[1])
        if not ids:
            return []
        all_ids, all_scores = np.concatenate(ids), np.concatenate(scores)
        order = np.lexsort((all_ids, -all_scores))[:k]  # best first; ties by chunk id
        return [(int(all_ids[i]), float(all_scores[i])) for i in order]

    def idf(self, terms: list[str]) -> dict[str, float]:
        """BM25's inverse document frequency (smoothed to stay positive) of each token that
        some live chunk holds, over every shard (global statistics)."""
        return self._idf(self._postings(list(dict.fromkeys(terms)))[1])

    def _idf(self, df: Counter[str]) -> dict[str, float]:
        return {w: math.log(1 + (self.n_docs - n + 0.5) / (n + 0.5)) for w, n in df.items()}

    def _postings(self, words: list[str]) -> tuple[
            list[list[tuple[str, np.ndarray, np.ndarray]]], Counter[str]]:
        """Per shard, the live (word, rows, tf) postings of ``words``; and their df."""
        found: list[list[tuple[str, np.ndarray, np.ndarray]]] = []
        df: Counter[str] = Counter()
        for shard, live in zip(self.shards, self._live, strict=True):
            hits = []
            for word in words:
                post = shard.postings(word)
                if post is None:
                    continue
                rows, tf = post
                if live is not None:
                    keep = live[rows]
                    rows, tf = rows[keep], tf[keep]
                if len(rows):
                    hits.append((word, rows, tf))
                    df[word] += len(rows)
            found.append(hits)
        return found, df

    def _score(self, shard: Shard, hits: list[tuple[str, np.ndarray, np.ndarray]],
               counts: Counter[str], idf: dict[str, float],
               allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        acc = np.zeros(len(shard), dtype=np.float64)
        for word, rows, tf in hits:
            tf64 = tf.astype(np.float64)
            norm = K1 * (1 - B + B * shard.doc_len[rows] / self.avgdl)
            acc[rows] += counts[word] * idf[word] * tf64 / (tf64 + norm)
        touched = np.unique(np.concatenate([rows for _, rows, _ in hits]))
        ids, scores = shard.ids[touched], acc[touched]
        keep = scores > 0
        if allowed is not None:
            keep &= np.isin(ids, allowed)
        return np.asarray(ids[keep], dtype=np.int64), scores[keep]
