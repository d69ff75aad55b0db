"""`paperchat reindex`: re-chunk and re-embed every paper from the text stored in the
library (no download), in place in one transaction, while chats keep searching (see
``Library.reindex``)."""

from __future__ import annotations

import numpy as np

from core.types import Chunk, Page, Paper
from index.library import Library, embed_text
from ingest.chunk import Chunker


def reindex(library: Library, chunker: Chunker) -> int:
    """Rebuild all chunks and vectors with the current settings; returns the chunk count."""
    embedder = library.embedder

    def rebuild(paper: Paper, pages: list[Page]) -> tuple[list[Chunk], np.ndarray]:
        chunks = chunker.chunk(paper.id, pages)
        return chunks, embedder.embed([embed_text(paper.title, c.section, c.text)
                                       for c in chunks])

    return library.reindex(rebuild)
