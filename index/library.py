"""The library in a data directory: one SQLite file (the truth) plus derived FAISS and BM25
files named by a hash of what built them, rebuilt or extended when they lag behind.

    <data_dir>/library.sqlite          papers, pages, chunks, vectors, manifest (meta table)
    <data_dir>/index/<key>/            vectors.faiss, ids.npy, bm25*, built.json
    <data_dir>/manifest.json           a readable copy of the manifest
    <data_dir>/pdfs/                   downloaded PDFs (cache)
    <data_dir>/pdf-store/<sha256>.pdf  the library's own copy of each paper's PDF (index.pdfstore)
    <data_dir>/sentences.sqlite        sentence rows of the chunks (index.sentences)
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from core.errors import LibraryBusyError, LibraryMismatchError
from core.fsio import atomic_write_text, fsync_tree
from core.settings import Settings
from core.types import Chunk, Page, Paper
from index.bm25 import BM25Index
from index.embedder import Embedder
from index.pdfstore import PdfStore
from index.sentences import ChunkSentences, SentenceStore, embed_chunks, forget_paper
from index.store import Store, disk_errors
from index.vectors import VectorIndex, choose_kind

log = logging.getLogger(__name__)
FORMAT_VERSION = "1"


def embed_text(title: str, section: str, text: str) -> str:
    """What the embedder and BM25 see for a chunk: its paper title and section give context."""
    head = f"{title}. {section}." if section else f"{title}."
    return f"{head}\n{text}"


Rebuild = Callable[[Paper, list[Page]], tuple[list[Chunk], np.ndarray]]


def _remove_sidecars(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class Catalog:
    """The papers of a library and its writer lock, without the embedding model: what
    `list` and `remove` need. :class:`Library` adds the embedder and the search indexes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.dir / "library.sqlite")
        self.pdfs = PdfStore(self.dir)
        self._papers_cache: tuple[tuple[int, int], list[Paper]] | None = None

    @contextmanager
    def writer(self, wait: bool = True) -> Iterator[Catalog]:
        """Exclusive writer lock across processes (the UI and the CLI may both ingest)."""
        lock_path = self.dir / ".write.lock"
        with open(lock_path, "w") as fh:
            flags = fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)
            try:
                fcntl.flock(fh, flags)
            except BlockingIOError as err:
                raise LibraryBusyError(
                    f"Another paperchat process is writing to {self.dir}.",
                    "Wait for it to finish, then retry.") from err
            try:
                yield self
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _write_manifest_file(self) -> None:
        meta = self.store.meta()
        meta["papers"] = str(len(self.store.papers()))
        meta["chunks"] = str(self.store.chunk_count())
        atomic_write_text(self.dir / "manifest.json", json.dumps(meta, indent=2) + "\n")

    def remove_paper(self, paper_id: str) -> bool:
        """Remove a paper, then its PDF copy (a crash in between leaves an unused copy)."""
        paper = self.store.paper(paper_id)
        gone = self.store.delete_paper(paper_id)
        if gone:
            forget_paper(self.dir, paper_id)
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
        self.store.close()


class Library(Catalog):
    """Open with ``Library(settings, embedder)``; the embedder fixes the manifest."""

    def __init__(self, settings: Settings, embedder: Embedder, *, check: bool = True) -> None:
        super().__init__(settings)
        self.embedder = embedder
        self._lock = threading.RLock()
        self._vectors: VectorIndex | None = None
        self._bm25: BM25Index | None = None
        self._built: tuple[int, int] = (-1, -1)
        self._built_store = ""  # the store_id of the SQLite file the indexes came from
        self._sentences: SentenceStore | None = None
        if check:
            self.check_manifest()

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

    def reindex(self, rebuild: Rebuild,
                update: Callable[[Paper, list[Page]], Paper] | None = None) -> int:
        """Re-chunk and re-embed every paper (``rebuild(paper, pages)`` gives its chunks and
        vectors; ``update(paper, pages)``, when given, the paper as stored, e.g. with its
        aliases derived again) into a new database file that replaces the old one
        atomically; returns the chunk count. The caller holds the writer lock."""
        old = self.store
        target = old.path
        tmp = target.with_name(target.name + ".reindex")
        tmp.unlink(missing_ok=True)
        _remove_sidecars(tmp)
        new = Store(tmp)
        gen, removals = old.counters()
        with new.transaction() as db:
            new.set_meta(db, {**self.wanted_manifest(), "generation": str(gen),
                              "removals": str(removals), "store_id": uuid.uuid4().hex})
        total = 0
        for paper in old.papers():
            pages = old.pages_of(paper.id)
            chunks, vectors = rebuild(paper, pages)
            new.put_paper(update(paper, pages) if update else paper, pages, chunks, vectors)
            total += len(chunks)
        with new.transaction() as db:  # a removal: derived indexes must be rebuilt
            new.set_meta(db, {"removals": str(removals + 1)})
        new.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        new.close()
        old.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        old.close()
        os.replace(tmp, target)
        _remove_sidecars(tmp)
        _remove_sidecars(target)
        self.store = Store(target)
        self._vectors = None
        self.refresh()
        self._write_manifest_file()
        return total

    # -- derived indexes -------------------------------------------------------------
    @property
    def index_dir(self) -> Path:
        return self.dir / "index" / self.settings.library_key()

    def dim(self) -> int:
        return int(self.store.meta().get("dim", "0"))

    def refresh(self) -> None:
        """Bring the FAISS and BM25 indexes up to date with the SQLite file."""
        with self._lock:
            counters = self.store.counters()
            if counters == self._built and self._vectors is not None:
                return
            if self._vectors is None and self._load_built(counters):
                return
            self._rebuild(counters)

    def _load_built(self, counters: tuple[int, int]) -> bool:
        built_file = self.index_dir / "built.json"
        if not built_file.is_file():
            return False
        built = json.loads(built_file.read_text())
        store_id = self.store.meta().get("store_id", "")
        if (built["generation"], built["removals"]) != counters:
            return False
        if built.get("store_id", "") != store_id:  # built from a file `reindex` replaced
            return False
        if not BM25Index.is_current(self.index_dir):  # built by an older tokenizer
            return False
        self._vectors = VectorIndex.load(self.index_dir, built["dim"],
                                         self.settings.index, built["kind"])
        self._bm25 = BM25Index.load(self.index_dir)
        self._built, self._built_store = counters, store_id
        return True

    def _rebuild(self, counters: tuple[int, int]) -> None:
        """Extend the vector index with the chunks added since it was built (rebuild it when
        that cannot be done) and rebuild BM25."""
        dim = self.dim()
        kind = choose_kind(self.store.chunk_count(), self.settings.index)
        store_id = self.store.meta().get("store_id", "")
        vectors = self._reusable_vectors(store_id, counters[1], kind, dim)
        if vectors is None:
            vectors = VectorIndex(dim, self.settings.index, kind)
        for ids, vecs in self.store.iter_vectors(dim, min_id=vectors.max_id):
            vectors.add(ids, vecs)
        bm25 = BM25Index()
        ids_list: list[int] = []
        texts: list[str] = []
        for batch in self.store.iter_texts():
            ids_list.extend(r[0] for r in batch)
            texts.extend(embed_text(*r[1:]) for r in batch)
        bm25.build(np.asarray(ids_list, dtype=np.int64), texts)
        self._vectors, self._bm25, self._built = vectors, bm25, counters
        self._built_store = store_id
        self._save_built(counters, kind, dim)

    def _reusable_vectors(self, store_id: str, removals: int, kind: str,
                          dim: int) -> VectorIndex | None:
        """The vector index in memory, else the one saved on disk, when it can be brought up
        to date without a rebuild: built from this SQLite file (`reindex` writes a new one,
        whose chunk ids start again), same kind and size of vectors, and either no chunk
        removed since or (HNSW, which cannot delete) few enough to mask out."""
        vectors, built_store, built_removals = self._vectors, self._built_store, self._built[1]
        if vectors is None:
            vectors, built_store, built_removals = self._load_saved_vectors()
        if (vectors is None or built_store != store_id or vectors.kind != kind
                or vectors.dim != dim):
            return None
        if built_removals != removals and not vectors.mask_missing(self.store.chunk_ids()):
            return None
        return vectors

    def _load_saved_vectors(self) -> tuple[VectorIndex | None, str, int]:
        """The saved vector index and the removals counter it was built at (a new process
        extends it instead of rebuilding: an HNSW build of a large library takes minutes)."""
        built_file = self.index_dir / "built.json"
        if not built_file.is_file():
            return None, "", -1
        built = json.loads(built_file.read_text())
        return (VectorIndex.load(self.index_dir, built["dim"], self.settings.index,
                                 built["kind"]), built.get("store_id", ""), built["removals"])

    def _save_built(self, counters: tuple[int, int], kind: str, dim: int) -> None:
        assert self._vectors is not None and self._bm25 is not None
        parent = self.index_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        with disk_errors(parent):
            tmp = Path(tempfile.mkdtemp(dir=parent, prefix=".build-"))
            try:
                self._vectors.save(tmp)
                self._bm25.save(tmp)
                built = {"generation": counters[0], "removals": counters[1], "kind": kind,
                         "dim": dim, "count": len(self._vectors),
                         "store_id": self._built_store}
                (tmp / "built.json").write_text(json.dumps(built))
                fsync_tree(tmp)
                old = parent / f".old-{self.index_dir.name}"
                shutil.rmtree(old, ignore_errors=True)
                if self.index_dir.exists():
                    os.replace(self.index_dir, old)
                os.replace(tmp, self.index_dir)
                shutil.rmtree(old, ignore_errors=True)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

    # -- reading ---------------------------------------------------------------------
    def chunks(self, ids: list[int]) -> dict[int, Chunk]:
        return self.store.chunks_by_ids(ids)

    def allowed_ids(self, paper_ids: list[str] | None) -> np.ndarray | None:
        if not paper_ids:
            return None
        return np.asarray(self.store.chunk_ids_of(paper_ids), dtype=np.int64)

    def dense_search(self, query_vector: np.ndarray, k: int,
                     allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        self.refresh()
        assert self._vectors is not None
        return self._vectors.search(query_vector, k, allowed)

    def bm25_search(self, query: str, k: int,
                    allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        self.refresh()
        assert self._bm25 is not None
        return self._bm25.search(query, k, allowed)

    def iter_vectors(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(chunk ids, vectors) of every chunk, in id order, in batches."""
        return self.store.iter_vectors(self.dim())

    def iter_embed_texts(self) -> Iterator[tuple[int, str]]:
        """(chunk id, the text the embedder and BM25 see) of every chunk, in id order."""
        for batch in self.store.iter_texts():
            for cid, title, section, text in batch:
                yield cid, embed_text(title, section, text)

    # -- sentence signals (index/sentences.py: their own file and schema) --------------
    def sentence_store(self) -> SentenceStore:
        """The sentence rows of this library (opened on first use)."""
        with self._lock:
            if self._sentences is None:
                self._sentences = SentenceStore(self.dir / "sentences.sqlite",
                                                self.settings.library_key())
            return self._sentences

    def sentences(self, chunks: list[Chunk]) -> dict[int, ChunkSentences]:
        """Chunk id -> its sentence spans, tokens and vectors, for chunks that have them."""
        return self.sentence_store().get(chunks)

    def put_sentences(self, paper_id: str, chunks: list[Chunk],
                      rows: list[ChunkSentences]) -> None:
        """Store the sentence rows of a paper's chunks (``index.sentences.embed_chunks``
        gives them with the chunk vectors)."""
        self.sentence_store().put(paper_id, chunks, rows)

    def complete_sentences(self, done: Callable[[str], None] | None = None) -> int:
        """Compute the sentence rows of every chunk that lacks one (a library from before
        sentence signals, or a paper whose rows a crash lost) and drop the rows no chunk
        uses; returns how many chunks were completed. Ingest and `reindex` call this; the
        caller holds the writer lock. ``done(paper_id)`` is called after each paper."""
        store = self.sentence_store()
        keys: set[bytes] = set()
        added = 0
        for paper in self.papers():
            chunks = self.chunks_of(paper.id)
            keys.update(store.key(c.text) for c in chunks)
            todo = store.missing(chunks)
            if todo:
                inputs = [embed_text(paper.title, c.section, c.text) for c in todo]
                _, rows = embed_chunks(self.embedder, self.pages_of(paper.id), todo, inputs)
                store.put(paper.id, todo, rows)
                added += len(todo)
            if done is not None:
                done(paper.id)
        store.keep_only(keys)
        return added

    def close(self) -> None:
        if self._sentences is not None:
            self._sentences.close()
            self._sentences = None
        super().close()

    def term_idf(self, terms: list[str]) -> dict[str, float]:
        """BM25 inverse document frequency of search tokens (unknown tokens left out)."""
        self.refresh()
        assert self._bm25 is not None
        return self._bm25.idf(terms)
