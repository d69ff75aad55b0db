"""The library in a data directory: one SQLite file (the truth) plus derived FAISS and BM25
files that writers build and save and readers load (see ``index.live``).

    <data_dir>/library.sqlite          papers, pages, chunks, vectors, manifest (meta table)
    <data_dir>/index/<key>/            built.json + vector index and BM25 shard parts
                                       (see ``index.files``)
    <data_dir>/manifest.json           a readable copy of the manifest
    <data_dir>/pdfs/                   downloaded PDFs (cache)
    <data_dir>/pdf-store/<sha256>.pdf  the library's own copy of each paper's PDF (index.pdfstore)

A writer is whoever holds ``writer()``: its changes are published (the indexes extended,
saved and swapped in for this process's readers) by ``refresh()`` or, at the latest, when
it leaves ``writer()``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from core.errors import LibraryBusyError, LibraryMismatchError
from core.fsio import atomic_write_text
from core.settings import Settings
from core.types import Chunk, Page, Paper
from index.embedder import Embedder
from index.live import LiveIndex
from index.pdfstore import PdfStore
from index.snapshot import SnapshotBuilder
from index.store import Store, embed_text

log = logging.getLogger(__name__)
FORMAT_VERSION = "1"
__all__ = ["Catalog", "Library", "Rebuild", "embed_text"]

Rebuild = Callable[[Paper, list[Page]], tuple[list[Chunk], np.ndarray]]


class Catalog:
    """The papers of a library, its writer lock and its search indexes as saved, without
    the embedding model: what `list` and `remove` need. :class:`Library` adds the embedder
    and searching."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.dir / "library.sqlite")
        self.pdfs = PdfStore(self.dir)
        self._papers_cache: tuple[tuple[int, int], list[Paper]] | None = None
        self._writer_thread: int | None = None
        self.live = LiveIndex(self.store, settings.index, self.index_dir, self, self._check)

    def _check(self) -> None:
        """Raise when the library no longer fits this process's settings (see Library)."""

    @property
    def index_dir(self) -> Path:
        return self.dir / "index" / self.settings.library_key()

    @contextmanager
    def writer(self, wait: bool = True) -> Iterator[Catalog]:
        """Exclusive writer lock across processes (the UI and the CLI may both ingest);
        re-entrant within a thread. Leaving it normally publishes the indexes."""
        if self.holds_writer():
            yield self
            return
        lock_path = self.dir / ".write.lock"
        with open(lock_path, "w") as fh:
            flags = fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)
            try:
                fcntl.flock(fh, flags)
            except BlockingIOError as err:
                raise LibraryBusyError(
                    f"Another paperchat process is writing to {self.dir}.",
                    "Wait for it to finish, then retry.") from err
            self._writer_thread = threading.get_ident()
            try:
                yield self
                self.live.publish_if_stale()
            finally:
                self._writer_thread = None
                fcntl.flock(fh, fcntl.LOCK_UN)

    def holds_writer(self) -> bool:
        return self._writer_thread == threading.get_ident()

    def refresh(self) -> None:
        """Bring this process's search indexes up to the SQLite file: publish them as the
        writer when this thread holds the writer lock (or can take it), else load what the
        writer saved last."""
        self.live.refresh()

    def _write_manifest_file(self) -> None:
        meta = self.store.meta()
        meta["papers"] = str(self.store.paper_count())
        meta["chunks"] = str(self.store.chunk_count())
        atomic_write_text(self.dir / "manifest.json", json.dumps(meta, indent=2) + "\n")

    def remove_paper(self, paper_id: str) -> bool:
        """Remove a paper, then its PDF copy (a crash in between leaves an unused copy)."""
        paper = self.store.paper(paper_id)
        gone = self.store.delete_paper(paper_id)
        if gone:
            self._write_manifest_file()
            if paper is not None:
                self.pdfs.remove(paper)
        return gone

    def papers(self) -> list[Paper]:
        """All papers, cached until the library changes (read on every search)."""
        counters = self.store.counters()
        cached = self._papers_cache
        if cached is None or cached[0] != counters:
            cached = (counters, self.store.papers())
            self._papers_cache = cached
        return list(cached[1])

    def paper(self, paper_id: str) -> Paper | None:
        return self.store.paper(paper_id)

    def paper_by_hash(self, content_hash: str) -> Paper | None:
        """The paper stored from a PDF with these bytes (sha256), if any."""
        return self.store.paper_by_hash(content_hash)

    def counters(self) -> tuple[int, int]:
        """(generation, removals): changes when papers are added or removed."""
        return self.store.counters()

    def chunk_count(self) -> int:
        return self.store.chunk_count()

    def chunks_of(self, paper_id: str) -> list[Chunk]:
        return self.store.chunks_of(paper_id)

    def pages_of(self, paper_id: str) -> list[Page]:
        return self.store.pages_of(paper_id)

    def close(self) -> None:
        self.live.close()
        self.store.close()


class Library(Catalog):
    """Open with ``Library(settings, embedder)``; the embedder fixes the manifest."""

    def __init__(self, settings: Settings, embedder: Embedder, *, check: bool = True) -> None:
        super().__init__(settings)
        self.embedder = embedder
        if check:
            self.check_manifest()

    def _check(self) -> None:
        self.check_manifest()  # a `reindex` with another model while this process runs

    # -- manifest --------------------------------------------------------------------
    def wanted_manifest(self) -> dict[str, str]:
        return {
            "format_version": FORMAT_VERSION,
            "embedding_model": self.settings.embedding.model,
            "dim": str(self.embedder.dim),
            "chunking": json.dumps(self.settings.chunking.model_dump(), sort_keys=True),
            "max_seq_length": str(self.settings.embedding.max_seq_length),
            "library_key": self.settings.library_key(),
            "embedding_vectors": getattr(self.embedder, "vectors", "fp32"),
        }

    def manifest(self) -> dict[str, str]:
        return self.store.meta()

    def check_manifest(self) -> None:
        """Fail when the library was built by another embedding model or chunking."""
        have = self.store.meta()
        if "embedding_model" not in have:
            return
        want = self.wanted_manifest()
        if have["embedding_model"] != want["embedding_model"]:
            raise LibraryMismatchError(
                f"The library in {self.dir} was built with embedding model "
                f"{have['embedding_model']!r}, but the settings ask for "
                f"{want['embedding_model']!r}.",
                "Run `paperchat reindex` to rebuild its vectors with the new model (no download)"
                f", or set embedding.model back to {have['embedding_model']!r}.")
        if have.get("embedding_vectors", "fp32") != want["embedding_vectors"]:
            backend = getattr(self.embedder, "backend", "torch")
            raise LibraryMismatchError(
                f"The library in {self.dir} holds {have.get('embedding_vectors', 'fp32')} "
                f"vectors, but embedding.backend {backend!r} makes "
                f"{want['embedding_vectors']} ones.",
                "Run `paperchat reindex` to rebuild its vectors with this backend, or set "
                "embedding.backend = 'auto' (it keeps the library's kind).")
        if have.get("chunking") != want["chunking"]:
            raise LibraryMismatchError(
                f"The library in {self.dir} was chunked with {have.get('chunking')}, "
                f"but the settings ask for {want['chunking']}.",
                "Run `paperchat reindex` to re-chunk and re-embed it from the stored text.")

    # -- writing ---------------------------------------------------------------------
    def add_paper(self, paper: Paper, pages: list[Page], chunks: list[Chunk],
                  vectors: np.ndarray) -> list[int]:
        """Store a paper (replacing one with the same id) in one transaction."""
        if not self.store.meta().get("embedding_model"):
            with self.store.transaction() as db:
                self.store.set_meta(db, self.wanted_manifest())
        ids = self.store.put_paper(paper, pages, chunks, vectors)
        self._write_manifest_file()
        return ids

    def reindex(self, rebuild: Rebuild) -> int:
        """Re-chunk and re-embed every paper (``rebuild(paper, pages)`` gives its chunks and
        vectors) in place, in one transaction: readers see the old chunks until it commits,
        then the new ones under new ids (never an old id with a new text). The new indexes
        are built inside the transaction and swapped in right after it. Returns the chunk
        count; the caller holds the writer lock."""
        builder = SnapshotBuilder(self.settings.index, self.embedder.dim)
        total = 0
        with self.store.transaction() as db:
            self.store.set_meta(db, self.wanted_manifest())
            for paper in self.store.papers():
                chunks, vectors = rebuild(paper, self.store.pages_of(paper.id))
                ids = self.store.replace_chunks(db, paper.id, chunks, vectors)
                builder.add(ids, vectors, [embed_text(paper.title, c.section, c.text)
                                           for c in chunks])
                total += len(ids)
            self.store.bump(db, removed=True, chunks_added=total - self.store.chunk_count())
            snapshot = builder.build(self.store.state_in(db))
        self.live.install(snapshot)
        self._write_manifest_file()
        return total

    # -- reading ---------------------------------------------------------------------
    def dim(self) -> int:
        return int(self.store.meta().get("dim", "0"))

    def chunks(self, ids: list[int]) -> dict[int, Chunk]:
        return self.store.chunks_by_ids(ids)

    def allowed_ids(self, paper_ids: list[str] | None) -> np.ndarray | None:
        if not paper_ids:
            return None
        return np.asarray(self.store.chunk_ids_of(paper_ids), dtype=np.int64)

    def dense_search(self, query_vector: np.ndarray, k: int,
                     allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        vectors = self.live.current().vectors
        if vectors is None:
            return []
        if query_vector.shape[-1] != vectors.dim:
            raise LibraryMismatchError(
                f"The library in {self.dir} now holds {vectors.dim}-dimensional vectors, "
                f"but this process embeds queries in {query_vector.shape[-1]}.",
                "It was reindexed with another embedding model: restart paperchat.")
        dim = vectors.dim
        return vectors.search(query_vector, k, allowed,
                              exact=lambda ids: self.store.vectors_of(ids, dim))

    def bm25_search(self, query: str, k: int,
                    allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        bm25 = self.live.current().bm25
        return bm25.search(query, k, allowed) if bm25 is not None else []

    def iter_vectors(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(chunk ids, vectors) of every chunk, in id order, in batches."""
        return self.store.iter_vectors(self.dim())

    def iter_embed_texts(self) -> Iterator[tuple[int, str]]:
        """(chunk id, the text the embedder and BM25 see) of every chunk, in id order."""
        for ids, texts in self.store.iter_embed_texts():
            yield from zip(ids, texts, strict=True)
