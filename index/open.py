"""Create the heavy objects once per process: the embedder and the library."""

from __future__ import annotations

from index.embedder import SentenceTransformerEmbedder
from index.library import Library
from paperchat.settings import Settings


def open_library(settings: Settings, *, check: bool = True) -> Library:
    """The library with its embedder (loaded once; checks the manifest)."""
    embedder = SentenceTransformerEmbedder(settings.embedding)
    return Library(settings, embedder, check=check)
