"""Sentence signals for evidence-level ranking, computed once at ingest (a query cannot
afford to embed the sentences of its candidates).

For every chunk: the spans of its sentences (a sentence cut by a chunk boundary is read
whole: ``head``/``tail`` hold the text of the neighbouring chunks that completes it), the
search tokens of each whole sentence and a vector for each. With a model that pools token
vectors by their mean (all-MiniLM-L6-v2, e5) a sentence's vector is the mean of its tokens'
vectors in the chunk's own forward pass, so ingest embeds nothing more than the chunks
(measured on the tune set: as good as embedding each sentence alone, at no extra cost);
other models embed each sentence alone. They live in their own file,
``<data_dir>/sentences.sqlite``, one row per chunk, keyed by a hash of the embedding setup
and the chunk's text: a row can only ever be read for a chunk with that very text under
that model, so the file needs no transaction shared with ``library.sqlite``. Removing a
paper deletes its rows; ``Library.complete_sentences`` (run by ingest and `reindex`) adds
the missing rows and drops the ones no chunk uses. A chunk without a row (a library from
before this file, or a crash between the two writes) is ranked without sentence signals.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from core.text import reflow, tokenize
from core.types import Chunk, Page
from index.embedder import Kind

FILE = "sentences.sqlite"
FORMAT = "1"  # part of every row's key: bump when what a row holds changes
SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk_sentences (
    key BLOB PRIMARY KEY, paper_id TEXT NOT NULL, spans BLOB NOT NULL, head TEXT NOT NULL,
    tail TEXT NOT NULL, terms TEXT NOT NULL, vectors BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunk_sentences_paper ON chunk_sentences(paper_id);
"""
# Sentence ends; blank lines end a unit too (headings, captions, table blocks).
SENTENCE_END = re.compile(r"(?<=[.!?])[\"”’)]?\s+(?=[\"“(\[]?[A-Z0-9])|\n\s*\n")
TABLE_LINE_CHARS = 45  # a block of lines this short (median) is a table: one unit a line
MAX_UNIT = 600  # longer units are cut at line ends
MAX_HEAD = 400  # most text borrowed from a neighbouring chunk to complete a sentence
EMBED_CHARS = 512  # characters of a sentence given to the embedder
PERCENT = "percent"


@dataclass(frozen=True)
class ChunkSentences:
    """The sentences of one chunk: ``spans`` (n x 2, offsets in the chunk text, clipped to
    it), ``terms`` (search tokens of each whole sentence), ``vectors`` (n x dim, of each
    whole sentence), ``head``/``tail`` (text before/after the chunk that completes its
    first/last sentence, "" when it is whole)."""

    spans: np.ndarray
    terms: list[list[str]]
    vectors: np.ndarray
    head: str = ""
    tail: str = ""


def _cut_lines(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """A unit cut at its line ends: one per line for a table-like block, else pieces of at
    most MAX_UNIT characters."""
    lines = []
    pos = start
    for line in text[start:end].split("\n"):
        lines.append((pos, pos + len(line)))
        pos += len(line) + 1
    lengths = sorted(e - s for s, e in lines)
    if len(lines) >= 3 and lengths[len(lengths) // 2] <= TABLE_LINE_CHARS:
        yield from lines
        return
    piece_start = start
    for s, e in lines:
        if e - piece_start > MAX_UNIT and s > piece_start:
            yield piece_start, s - 1
            piece_start = s
    yield piece_start, end


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the sentences of a paper's text, stripped, in order; a table-like
    block gives one unit per line."""
    spans = []
    start = 0
    for m in [*SENTENCE_END.finditer(text), None]:
        end = m.start() if m else len(text)
        if end > start:
            for s, e in _cut_lines(text, start, end) if "\n" in text[start:end] else [(start, end)]:
                while s < e and text[s].isspace():
                    s += 1
                while e > s and text[e - 1].isspace():
                    e -= 1
                if e - s >= 3 and any(ch.isalnum() for ch in text[s:e]):
                    spans.append((s, e))
        start = m.end() if m else len(text)
    return spans


def sentence_terms(sentence: str) -> list[str]:
    """The search tokens of a sentence, plus "percent" when it gives a percentage ("96%":
    the tokenizer drops the sign, a question asks for a "percentage")."""
    terms = tokenize(sentence)
    return [*terms, PERCENT] if "%" in sentence and PERCENT not in terms else terms


def chunk_offsets(pages: list[Page], chunks: list[Chunk]) -> tuple[str, list[int]]:
    """The paper text (pages joined by "\\n", as the chunker joins them) and the offset of
    each chunk in it (-1 where the chunk's text is not found there)."""
    pages = sorted(pages, key=lambda p: p.number)
    text = "\n".join(p.text for p in pages)
    starts, pos = {}, 0
    for p in pages:
        starts[p.number] = pos
        pos += len(p.text) + 1
    out = []
    for c in chunks:
        at = starts.get(c.page_start, -1) + c.char_start if c.page_start in starts else -1
        if at < 0 or text[at:at + len(c.text)] != c.text:
            at = text.find(c.text)
        out.append(at)
    return text, out


class SpanEmbedder(Protocol):
    """What sentence rows need from the embedder (``SentenceTransformerEmbedder``);
    ``embed_spans`` is only called when ``pools_by_mean`` is true."""

    def embed(self, texts: list[str], kind: Kind = "passage") -> np.ndarray: ...


def _overlapping(spans: list[tuple[int, int]], starts: list[int], at: int,
                 end: int) -> list[tuple[int, int]]:
    """The sentence spans that overlap [at, end)."""
    i = max(0, bisect_right(starts, at) - 1)
    out = []
    while i < len(spans) and spans[i][0] < end:
        if spans[i][1] > at:
            out.append(spans[i])
        i += 1
    return out


def _sentence_vectors(embedder: SpanEmbedder, text: str, inputs: list[str],
                      chunks: list[Chunk], offsets: list[int],
                      mine: list[list[tuple[int, int]]]
                      ) -> tuple[np.ndarray, dict[tuple[int, int], np.ndarray]]:
    """The chunk vectors and one vector per distinct sentence. A model that pools by mean
    gives both in one forward pass (a sentence's tokens in its chunk; a sentence in two
    chunks takes the vector of the chunk that holds more of it, so a cut sentence is read
    whole from its neighbour); another model embeds each sentence on its own."""
    if not getattr(embedder, "pools_by_mean", False):
        distinct = sorted({s for m in mine for s in m})
        vecs = embedder.embed([reflow(text[a:b])[:EMBED_CHARS] for a, b in distinct])
        return embedder.embed(inputs), dict(zip(distinct, vecs, strict=True))
    rel = [[(max(a, at) - at + len(inp) - len(c.text), min(b, at + len(c.text)) - at
             + len(inp) - len(c.text)) for a, b in m]
           for c, at, inp, m in zip(chunks, offsets, inputs, mine, strict=True)]
    vectors, per_chunk = embedder.embed_spans(inputs, rel)  # type: ignore[attr-defined]
    best: dict[tuple[int, int], tuple[float, np.ndarray]] = {}
    for c, at, m, vecs in zip(chunks, offsets, mine, per_chunk, strict=True):
        for (a, b), v in zip(m, vecs, strict=True):
            cover = (min(b, at + len(c.text)) - max(a, at)) / (b - a) if v.any() else -1.0
            if (a, b) not in best or best[(a, b)][0] < cover:
                best[(a, b)] = (cover, v)
    return vectors, {span: v for span, (_, v) in best.items()}


def embed_chunks(embedder: SpanEmbedder, pages: list[Page], chunks: list[Chunk],
                 inputs: list[str]) -> tuple[np.ndarray, list[ChunkSentences]]:
    """The vectors of a paper's chunks (``inputs``: the text the embedder reads for each
    chunk, ending with the chunk's text) and the sentence rows of each chunk."""
    text, offsets = chunk_offsets(pages, chunks)
    spans = sentence_spans(text)
    starts = [a for a, _ in spans]
    mine = [_overlapping(spans, starts, at, at + len(c.text)) if at >= 0 else []
            for c, at in zip(chunks, offsets, strict=True)]
    vectors, by_span = _sentence_vectors(embedder, text, inputs, chunks, offsets, mine)
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    terms = {span: sentence_terms(reflow(text[span[0]:span[1]])) for span in by_span}
    rows = []
    for c, at, m in zip(chunks, offsets, mine, strict=True):
        end = at + len(c.text)
        if not m:
            rows.append(ChunkSentences(np.zeros((0, 2), np.int32), [],
                                       np.zeros((0, dim), np.float32)))
            continue
        clipped = np.asarray([(max(a, at) - at, min(b, end) - at) for a, b in m], np.int32)
        head = text[max(m[0][0], at - MAX_HEAD):at] if m[0][0] < at else ""
        tail = text[end:min(m[-1][1], end + MAX_HEAD)] if m[-1][1] > end else ""
        rows.append(ChunkSentences(clipped, [terms[s] for s in m],
                                   np.stack([by_span[s] for s in m]).astype(np.float32),
                                   head, tail))
    return vectors, rows


class SentenceStore:
    """The sentence rows of a library (``<data_dir>/sentences.sqlite``). ``setup`` names
    what built the vectors (embedding model and chunking): part of every row's key."""

    def __init__(self, path: Path, setup: str) -> None:
        self.path = path
        self.setup = setup
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30.0, check_same_thread=False,
                                   isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)

    def key(self, chunk_text: str) -> bytes:
        return hashlib.blake2b(f"{FORMAT}\0{self.setup}\0{chunk_text}".encode(),
                               digest_size=16).digest()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, chunks: Iterable[Chunk]) -> dict[int, ChunkSentences]:
        """Chunk id -> its sentences, for the chunks that have a row."""
        by_key = {self.key(c.text): c.id for c in chunks if c.id is not None}
        if not by_key:
            return {}
        marks = ",".join("?" * len(by_key))
        with self._lock:
            rows = self._db.execute(
                "SELECT key, spans, head, tail, terms, vectors FROM chunk_sentences "
                f"WHERE key IN ({marks})", list(by_key)).fetchall()
        out = {}
        for key, spans, head, tail, terms, vectors in rows:
            span = np.frombuffer(spans, dtype=np.int32).reshape(-1, 2)
            vecs = np.frombuffer(vectors, dtype=np.float16).reshape(len(span), -1)
            out[by_key[key]] = ChunkSentences(
                span, [t.split(" ") if t else [] for t in terms.split("\n")] if len(span) else [],
                vecs.astype(np.float32), head, tail)
        return out

    def missing(self, chunks: list[Chunk]) -> list[Chunk]:
        """The chunks that have no row."""
        have = self._have([self.key(c.text) for c in chunks])
        return [c for c in chunks if self.key(c.text) not in have]

    def _have(self, keys: list[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            marks = ",".join("?" * len(part))
            with self._lock:
                found.update(r[0] for r in self._db.execute(
                    f"SELECT key FROM chunk_sentences WHERE key IN ({marks})", part))
        return found

    def put(self, paper_id: str, chunks: list[Chunk], rows: list[ChunkSentences]) -> None:
        """Store the rows of one paper's chunks in one transaction."""
        values = [(self.key(c.text), paper_id, r.spans.astype(np.int32).tobytes(), r.head,
                   r.tail, "\n".join(" ".join(t) for t in r.terms),
                   r.vectors.astype(np.float16).tobytes())
                  for c, r in zip(chunks, rows, strict=True)]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO chunk_sentences VALUES "
                                     "(?,?,?,?,?,?,?)", values)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def keep_only(self, keys: set[bytes]) -> int:
        """Delete the rows whose key is not in ``keys``; returns how many."""
        with self._lock:
            stored = [r[0] for r in self._db.execute("SELECT key FROM chunk_sentences")]
        stale = [k for k in stored if k not in keys]
        with self._lock:
            for i in range(0, len(stale), 500):
                part = stale[i:i + 500]
                self._db.execute(f"DELETE FROM chunk_sentences WHERE key IN "
                                 f"({','.join('?' * len(part))})", part)
        return len(stale)


def forget_paper(data_dir: Path, paper_id: str) -> None:
    """Delete a removed paper's rows (nothing to do when the file does not exist)."""
    path = data_dir / FILE
    if not path.is_file():
        return
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        db.execute("DELETE FROM chunk_sentences WHERE paper_id = ?", (paper_id,))
    finally:
        db.close()
