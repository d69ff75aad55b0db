"""Create the heavy objects once per process: the embedder and the library."""

from __future__ import annotations

import sqlite3

from core.errors import EmptyLibraryError
from core.settings import Settings
from index.embedder import Embedder, SentenceTransformerEmbedder, pick_device, resolve_backend
from index.library import Library


def library_vectors(settings: Settings) -> str | None:
    """The kind of vectors (fp32 | int8) the library in the data directory holds; None when
    there is no library yet. Reads the manifest without creating anything."""
    db = settings.data_dir / "library.sqlite"
    if not db.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            rows = dict(con.execute("SELECT key, value FROM meta").fetchall())
        finally:
            con.close()
    except sqlite3.Error:
        return None  # Library() reports an unreadable file with its own message
    if "embedding_model" not in rows:
        return None
    return rows.get("embedding_vectors", "fp32")


def make_embedder(settings: Settings, library_vectors: str | None = None) -> Embedder:
    """The embedder of ``embedding.backend`` ('auto' keeps ``library_vectors``)."""
    emb = settings.embedding
    backend = resolve_backend(emb.backend, pick_device(emb.device), library_vectors)
    if backend == "torch":
        return SentenceTransformerEmbedder(emb)
    from index.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(emb, settings.onnx_dir, int8=backend == "onnx-int8")


def open_library(settings: Settings, *, check: bool = True) -> Library:
    """The library with its embedder (loaded once; checks the manifest). With ``check``
    off (reindex), 'auto' does not follow the library's vectors: they are to be rebuilt."""
    have = library_vectors(settings) if check else None
    return Library(settings, make_embedder(settings, have), check=check)


def require_library(settings: Settings) -> None:
    """Raise EmptyLibraryError, creating nothing, when the data directory holds no library
    (for the commands that only read one: search, ask)."""
    if not (settings.data_dir / "library.sqlite").is_file():
        raise EmptyLibraryError()
