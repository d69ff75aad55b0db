"""SQLite store: papers, pages, chunks and their vectors. The single source of truth.

Every write is one transaction; the FAISS and BM25 files are derived from this file (see
``index.live``). ``generation`` counts writes, ``removals`` counts writes that deleted
chunks (so derived indexes know whether they can be extended or must mask rows). Chunk ids
come from AUTOINCREMENT: an id, once given, never names another chunk, so an index built
earlier can be stale but never wrong. ``chunk_count`` (meta) and ``papers.chunks`` are kept
in the same transactions as the rows they count (no query counts rows).
"""

from __future__ import annotations

import errno
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.errors import DiskFullError, LibraryError
from core.types import Chunk, Page, Paper

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS papers (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, authors TEXT NOT NULL, year INTEGER,
    abstract TEXT NOT NULL, categories TEXT NOT NULL, version INTEGER, arxiv_id TEXT,
    pdf_url TEXT, source TEXT NOT NULL, content_hash TEXT NOT NULL, pages INTEGER NOT NULL,
    metadata_from TEXT NOT NULL, added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pages (
    paper_id TEXT NOT NULL REFERENCES papers(id) ON DELETE CASCADE,
    number INTEGER NOT NULL, text TEXT NOT NULL, PRIMARY KEY (paper_id, number)
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    paper_id TEXT NOT NULL REFERENCES papers(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, page_start INTEGER NOT NULL, page_end INTEGER NOT NULL,
    char_start INTEGER NOT NULL, char_end INTEGER NOT NULL, section TEXT NOT NULL,
    is_reference INTEGER NOT NULL, text TEXT NOT NULL, vector BLOB
);
CREATE INDEX IF NOT EXISTS chunks_paper ON chunks(paper_id);
CREATE INDEX IF NOT EXISTS papers_hash ON papers(content_hash);
"""

# Columns added after the first release: (name, declaration), added to older files on open.
PAPER_COLUMNS_ADDED = (("aliases", "TEXT NOT NULL DEFAULT '[]'"),
                       ("flags", "TEXT NOT NULL DEFAULT '[]'"),
                       ("pdf_file", "TEXT NOT NULL DEFAULT ''"),
                       ("chunks", "INTEGER NOT NULL DEFAULT 0"))
CHUNK_COLUMNS = ("id, paper_id, ordinal, page_start, page_end, char_start, char_end, "
                 "section, is_reference, text")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _chunk(row: sqlite3.Row | tuple) -> Chunk:
    (cid, paper_id, ordinal, p0, p1, c0, c1, section, is_ref, text) = tuple(row)
    return Chunk(paper_id=paper_id, ordinal=ordinal, text=text, page_start=p0, page_end=p1,
                 char_start=c0, char_end=c1, section=section, is_reference=bool(is_ref), id=cid)


def embed_text(title: str, section: str, text: str) -> str:
    """What the embedder and BM25 see for a chunk: its paper title and section give context."""
    head = f"{title}. {section}." if section else f"{title}."
    return f"{head}\n{text}"


def _paper(row: sqlite3.Row) -> Paper:
    return Paper(
        id=row["id"], title=row["title"], authors=tuple(json.loads(row["authors"])),
        year=row["year"], abstract=row["abstract"],
        categories=tuple(json.loads(row["categories"])), version=row["version"],
        arxiv_id=row["arxiv_id"], pdf_url=row["pdf_url"], source=row["source"],
        content_hash=row["content_hash"], pages=row["pages"], chunks=row["chunks"],
        metadata_from=row["metadata_from"], added_at=row["added_at"],
        aliases=tuple(json.loads(row["aliases"])), flags=tuple(json.loads(row["flags"])),
        pdf_file=row["pdf_file"],
    )


@contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Turn 'disk full' into DiskFullError, other SQLite failures into LibraryError."""
    try:
        yield
    except sqlite3.OperationalError as err:
        if "full" in str(err).lower():
            raise DiskFullError(str(path)) from err
        raise LibraryError(f"The library database {path} failed: {err}.",
                           "Check the disk and permissions, then retry.") from err
    except OSError as err:
        # numpy reports a short write ("4600 requested and 2016 written") without an errno
        if err.errno == errno.ENOSPC or (err.errno is None and "written" in str(err)):
            raise DiskFullError(str(path)) from err
        raise


class Store:
    """Thin typed access to the SQLite file. One connection per thread (WAL: readers never
    see a writer's uncommitted rows and never block it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        with disk_errors(path):
            self.db.executescript(SCHEMA)
            self._migrate()

    def _migrate(self) -> None:
        """Bring a library file made by an older version to this schema, in one transaction
        (two processes opening it at once migrate it once): new columns get their defaults,
        the chunk counts are counted once. An up-to-date file is only read (opening it never
        waits for a writer's long transaction, such as `reindex`)."""
        if not self._migration_due(self.db):
            return
        with self.transaction() as db:
            if not self._migration_due(db):
                return
            have = {r[1] for r in db.execute("PRAGMA table_info(papers)")}
            for name, decl in PAPER_COLUMNS_ADDED:
                if name not in have:
                    db.execute(f"ALTER TABLE papers ADD COLUMN {name} {decl}")
            if "chunks" not in have:
                db.execute("UPDATE papers SET chunks = (SELECT COUNT(*) FROM chunks c"
                           " WHERE c.paper_id = papers.id)")
            if db.execute("SELECT 1 FROM meta WHERE key = 'chunk_count'").fetchone() is None:
                (n,) = db.execute("SELECT COUNT(*) FROM chunks").fetchone()
                self.set_meta(db, {"chunk_count": str(n)})

    @staticmethod
    def _migration_due(db: sqlite3.Connection) -> bool:
        have = {r[1] for r in db.execute("PRAGMA table_info(papers)")}
        counted = db.execute("SELECT 1 FROM meta WHERE key = 'chunk_count'").fetchone()
        return counted is None or any(name not in have for name, _ in PAPER_COLUMNS_ADDED)

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            self._local.con = con
        return con

    def _connect(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False,
                                  isolation_level=None)
        except sqlite3.Error as err:
            raise LibraryError(f"Cannot open the library database {self.path}: {err}.",
                               "Check --data-dir and its permissions.") from err
        con.row_factory = sqlite3.Row
        with disk_errors(self.path):
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA synchronous=NORMAL")
        with self._guard:
            self._all.append(con)
        return con

    def close(self) -> None:
        with self._guard:
            for con in self._all:
                con.close()
            self._all.clear()
        self._local = threading.local()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with disk_errors(self.path):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- meta ------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.db.execute("SELECT key, value FROM meta")}

    def set_meta(self, db: sqlite3.Connection, values: dict[str, str]) -> None:
        db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                       list(values.items()))

    def counters(self) -> tuple[int, int]:
        """(generation, removals)."""
        gen, rem, _ = self.state()
        return gen, rem

    def state(self) -> tuple[int, int, str]:
        """(generation, removals, store_id): what a derived index was built from (one read
        of three meta rows; every search asks)."""
        return self.state_in(self.db)

    @staticmethod
    def state_in(db: sqlite3.Connection) -> tuple[int, int, str]:
        rows = dict(db.execute("SELECT key, value FROM meta WHERE key IN "
                               "('generation', 'removals', 'store_id')").fetchall())
        return (int(rows.get("generation", 0)), int(rows.get("removals", 0)),
                str(rows.get("store_id", "")))

    def bump(self, db: sqlite3.Connection, removed: bool, chunks_added: int) -> None:
        """Count a write (inside its transaction): generation, removals, chunk_count."""
        gen, rem, _ = self.state_in(db)
        (count,) = db.execute("SELECT value FROM meta WHERE key = 'chunk_count'").fetchone()
        values = {"generation": str(gen + 1), "chunk_count": str(int(count) + chunks_added)}
        if removed:
            values["removals"] = str(rem + 1)
        self.set_meta(db, values)

    # -- papers ----------------------------------------------------------------------
    def papers(self) -> list[Paper]:
        rows = self.db.execute("SELECT * FROM papers ORDER BY year, id").fetchall()
        return [_paper(r) for r in rows]

    def paper_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM papers").fetchone()[0])

    def paper(self, paper_id: str) -> Paper | None:
        row = self.db.execute("SELECT * FROM papers WHERE id = ?", (paper_id,)).fetchone()
        return _paper(row) if row is not None else None

    def paper_by_hash(self, content_hash: str) -> Paper | None:
        row = self.db.execute("SELECT id FROM papers WHERE content_hash = ?",
                              (content_hash,)).fetchone()
        return self.paper(row["id"]) if row else None

    def put_paper(self, paper: Paper, pages: list[Page], chunks: list[Chunk],
                  vectors: np.ndarray) -> list[int]:
        """Insert (or replace) a paper with its pages, chunks and vectors atomically."""
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        with self.transaction() as db:
            had = self._chunks_of_paper(db, paper.id)
            db.execute("DELETE FROM papers WHERE id = ?", (paper.id,))
            db.execute(
                "INSERT INTO papers (id, title, authors, year, abstract, categories, version,"
                " arxiv_id, pdf_url, source, content_hash, pages, metadata_from, added_at,"
                " aliases, flags, pdf_file) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (paper.id, paper.title, json.dumps(list(paper.authors)), paper.year,
                 paper.abstract, json.dumps(list(paper.categories)), paper.version,
                 paper.arxiv_id, paper.pdf_url, paper.source, paper.content_hash,
                 paper.pages, paper.metadata_from, paper.added_at or _now(),
                 json.dumps(list(paper.aliases)), json.dumps(list(paper.flags)),
                 paper.pdf_file))
            db.executemany("INSERT INTO pages VALUES (?,?,?)",
                           [(paper.id, p.number, p.text) for p in pages])
            ids = self._insert_chunks(db, paper.id, chunks, vectors)
            self.bump(db, removed=had is not None, chunks_added=len(ids) - (had or 0))
        return ids

    @staticmethod
    def _chunks_of_paper(db: sqlite3.Connection, paper_id: str) -> int | None:
        """The paper's chunk count, None when it is not stored."""
        row = db.execute("SELECT chunks FROM papers WHERE id = ?", (paper_id,)).fetchone()
        return int(row[0]) if row is not None else None

    @staticmethod
    def _insert_chunks(db: sqlite3.Connection, paper_id: str, chunks: list[Chunk],
                       vectors: np.ndarray) -> list[int]:
        ids = []
        for chunk, vec in zip(chunks, vectors, strict=True):
            cur = db.execute(
                "INSERT INTO chunks (paper_id, ordinal, page_start, page_end, char_start,"
                " char_end, section, is_reference, text, vector)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (paper_id, chunk.ordinal, chunk.page_start, chunk.page_end,
                 chunk.char_start, chunk.char_end, chunk.section, int(chunk.is_reference),
                 chunk.text, np.asarray(vec, dtype=np.float32).tobytes()))
            ids.append(int(cur.lastrowid or 0))
        db.execute("UPDATE papers SET chunks = ? WHERE id = ?", (len(ids), paper_id))
        return ids

    def replace_chunks(self, db: sqlite3.Connection, paper_id: str, chunks: list[Chunk],
                       vectors: np.ndarray) -> list[int]:
        """Inside the caller's transaction (``reindex``): the paper's chunks replaced by new
        ones (new ids); the caller bumps the counters once at the end."""
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        db.execute("DELETE FROM chunks WHERE paper_id = ?", (paper_id,))
        return self._insert_chunks(db, paper_id, chunks, vectors)

    @staticmethod
    def update_paper(db: sqlite3.Connection, paper: Paper) -> None:
        """Inside the caller's transaction (``reindex``): a stored paper's title, authors,
        year and aliases as ``paper`` gives them (its pages and chunks untouched)."""
        db.execute("UPDATE papers SET title = ?, authors = ?, year = ?, aliases = ?"
                   " WHERE id = ?", (paper.title, json.dumps(list(paper.authors)),
                                     paper.year, json.dumps(list(paper.aliases)), paper.id))

    def delete_paper(self, paper_id: str) -> bool:
        with self.transaction() as db:
            had = self._chunks_of_paper(db, paper_id)
            if had is not None:
                db.execute("DELETE FROM papers WHERE id = ?", (paper_id,))
                self.bump(db, removed=True, chunks_added=-had)
        return had is not None

    # -- chunks ----------------------------------------------------------------------
    def chunk_count(self) -> int:
        """Kept in the meta table by every write (no row count per query)."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'chunk_count'").fetchone()
        return int(row[0]) if row is not None else 0

    def chunks_by_ids(self, ids: Iterable[int]) -> dict[int, Chunk]:
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE id IN ({marks})", ids)
        return {row[0]: _chunk(row) for row in rows}

    def chunks_of(self, paper_id: str) -> list[Chunk]:
        rows = self.db.execute(
            f"SELECT {CHUNK_COLUMNS} FROM chunks WHERE paper_id = ? ORDER BY ordinal",
            (paper_id,))
        return [_chunk(r) for r in rows]

    def chunk_ids_of(self, paper_ids: Iterable[str]) -> list[int]:
        ids = list(paper_ids)
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(f"SELECT id FROM chunks WHERE paper_id IN ({marks})", ids)
        return [r[0] for r in rows]

    def chunk_ids(self) -> np.ndarray:
        """Every chunk id, ascending."""
        rows = self.db.execute("SELECT id FROM chunks ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def pages_of(self, paper_id: str) -> list[Page]:
        rows = self.db.execute(
            "SELECT number, text FROM pages WHERE paper_id = ? ORDER BY number", (paper_id,))
        return [Page(paper_id, r[0], r[1]) for r in rows]

    def iter_vectors(self, dim: int, min_id: int = 0,
                     batch: int = 20_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of chunks with id > min_id, in id order, in batches."""
        last = min_id
        while True:
            rows = self.db.execute(
                "SELECT id, vector FROM chunks WHERE id > ? ORDER BY id LIMIT ?",
                (last, batch)).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            yield ids, vecs.reshape(len(rows), dim)
            last = int(ids[-1])

    def vectors_of(self, ids: np.ndarray, dim: int) -> np.ndarray:
        """The stored vectors of chunk ``ids``, in that order (zeros for an id no longer
        stored: a paper removed since the index was built scores 0)."""
        out = np.zeros((len(ids), dim), dtype=np.float32)
        if len(ids) == 0:
            return out
        where = {int(c): i for i, c in enumerate(ids)}
        marks = ",".join("?" * len(where))
        for cid, blob in self.db.execute(
                f"SELECT id, vector FROM chunks WHERE id IN ({marks})", list(where)):
            out[where[cid]] = np.frombuffer(blob, dtype=np.float32)
        return out

    def iter_texts(self, min_id: int = 0,
                   batch: int = 20_000) -> Iterator[list[tuple[int, str, str, str]]]:
        """Batches of (chunk id, paper title, section, text) of chunks with id > min_id, in
        id order."""
        last = min_id
        while True:
            rows = self.db.execute(
                "SELECT c.id, p.title, c.section, c.text FROM chunks c JOIN papers p"
                " ON p.id = c.paper_id WHERE c.id > ? ORDER BY c.id LIMIT ?",
                (last, batch)).fetchall()
            if not rows:
                return
            yield [(r[0], r[1], r[2], r[3]) for r in rows]
            last = rows[-1][0]

    def iter_embed_texts(self, min_id: int = 0) -> Iterator[tuple[list[int], list[str]]]:
        """Batches of (chunk ids, the texts the embedder and BM25 see), id > min_id."""
        for rows in self.iter_texts(min_id):
            yield [r[0] for r in rows], [embed_text(*r[1:]) for r in rows]
