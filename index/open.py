"""Create the heavy objects once per process: the embedder and the library."""

from __future__ import annotations

from core.errors import EmptyLibraryError
from core.settings import Settings
from index.embedder import SentenceTransformerEmbedder
from index.library import Library


def open_library(settings: Settings, *, check: bool = True) -> Library:
    """The library with its embedder (loaded once; checks the manifest)."""
    embedder = SentenceTransformerEmbedder(settings.embedding)
    return Library(settings, embedder, check=check)


def require_library(settings: Settings) -> None:
    """Raise EmptyLibraryError, creating nothing, when the data directory holds no library
    (for the commands that only read one: search, ask)."""
    if not (settings.data_dir / "library.sqlite").is_file():
        raise EmptyLibraryError()
