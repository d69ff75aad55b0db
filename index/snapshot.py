"""Snapshots: what readers search. A snapshot pairs a vector index and a BM25 index built
from the SQLite file at one (generation, removals); it is never changed once made. A writer
makes the next one from the last (copy on write): the vector index is copied before rows
are added (``VectorIndex.copy``), removed papers' rows are masked in a copy (HNSW) or the
index is rebuilt (flat), and the BM25 index gains a shard. Chunk ids are never reused
(``index.store``), so every chunk with an id above the snapshot's ``max_id`` is new to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from core.settings import IndexSettings
from index.bm25 import BM25Index, ShardBuilder
from index.store import Store
from index.vectors import VectorIndex, choose_kind

State = tuple[int, int, str]  # (generation, removals, store_id) of the SQLite file


@dataclass(frozen=True, eq=False)
class Snapshot:
    state: State
    dim: int
    vectors: VectorIndex | None  # None: no chunks (or not loaded: the writer builds it)
    bm25: BM25Index | None
    saved: dict[str, str] = field(default_factory=dict)  # part -> file name it was saved as
    token: str = ""  # the saved built.json it was loaded from or written to ("" unsaved)

    @property
    def generation(self) -> int:
        return self.state[0]

    def with_bm25(self, bm25: BM25Index) -> Snapshot:
        return replace(self, bm25=bm25, token="")


def vectors_from(store: Store, settings: IndexSettings, old: VectorIndex | None,
                 live: np.ndarray | None, kind: str, dim: int) -> VectorIndex | None:
    """The vector index of the SQLite file now: ``old`` itself when nothing changed, else a
    copy of it extended with the new chunks and masked where papers went (HNSW), or a new
    index when that cannot be done (other kind or size of vectors, flat with removals,
    too many rows masked)."""
    if old is not None and (old.kind != kind or old.dim != dim):
        old = None
    if old is not None and live is not None:
        masked = old.copy(deep=False)
        old = masked if masked.mask_missing(live) else None
    batches = store.iter_vectors(dim, min_id=old.max_id if old is not None else 0)
    first = next(batches, None)
    if first is None:
        return old
    index = old.copy(deep=True) if old is not None else VectorIndex(dim, settings, kind)
    index.add(*first)
    for ids, vecs in batches:
        index.add(ids, vecs)
    index.flush()  # IVF-PQ trained and every row stored before readers share it
    return index


def bm25_from(store: Store, old: BM25Index | None, live: np.ndarray | None) -> BM25Index:
    """The BM25 index of the SQLite file now: ``old`` with the removed chunks masked and a
    shard of the chunks added since, or one shard of every chunk."""
    index = old if old is not None else BM25Index()
    if old is not None and live is not None:
        index = index.keeping(live)
    builder = ShardBuilder()
    for ids, texts in store.iter_embed_texts(min_id=index.max_id):
        builder.add(ids, texts)
    return index.with_shard(builder.build()) if len(builder) else index


def next_snapshot(store: Store, settings: IndexSettings, base: Snapshot | None) -> Snapshot:
    """The snapshot of the SQLite file now, made from ``base`` where it can be (its parts
    may be None: missing or corrupt files, rebuilt from SQLite)."""
    state = store.state()
    dim = int(store.meta().get("dim", "0"))
    if base is not None and base.state[2] != state[2]:  # another file (an old `reindex`)
        base = None
    removed = base is not None and base.state[1] != state[1]
    live = store.chunk_ids() if removed else None
    kind = choose_kind(store.chunk_count(), settings)
    vectors = vectors_from(store, settings, base.vectors if base else None, live, kind, dim)
    bm25 = bm25_from(store, base.bm25 if base else None, live)
    saved = dict(base.saved) if base is not None else {}
    if base is None or vectors is not base.vectors:
        saved.pop("vectors", None)
    return Snapshot(state, dim, vectors, bm25, saved)


class SnapshotBuilder:
    """A snapshot made from rows as they are written (``reindex`` builds the new indexes
    inside its transaction, so readers switch over as soon as it commits)."""

    def __init__(self, settings: IndexSettings, dim: int) -> None:
        self.settings, self.dim = settings, dim
        self.ids: list[np.ndarray] = []
        self.vectors: list[np.ndarray] = []
        self.bm25 = ShardBuilder()

    def add(self, ids: list[int], vectors: np.ndarray, texts: list[str]) -> None:
        self.ids.append(np.asarray(ids, dtype=np.int64))
        self.vectors.append(np.asarray(vectors, dtype=np.float32))
        self.bm25.add(ids, texts)

    def build(self, state: State) -> Snapshot:
        n = sum(len(i) for i in self.ids)
        vectors = None
        if n:
            vectors = VectorIndex(self.dim, self.settings, choose_kind(n, self.settings))
            vectors.add(np.concatenate(self.ids), np.concatenate(self.vectors))
            vectors.flush()
        return Snapshot(state, self.dim, vectors, BM25Index((self.bm25.build(),)))
