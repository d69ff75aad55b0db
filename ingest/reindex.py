"""`paperchat reindex`: re-chunk and re-embed every paper from the text stored in the
library (no download), in place in one transaction while chats keep searching (see
``Library.reindex``). It also brings a library ingested before aliases and sentence
signals existed up to date: aliases are derived again from the stored metadata and page
text, sentence rows computed."""

from __future__ import annotations

import numpy as np

from core.types import Chunk, Page, Paper
from index.library import Library, embed_text
from index.sentences import embed_chunks
from ingest.chunk import Chunker
from ingest.metadata import with_aliases


def reindex(library: Library, chunker: Chunker) -> int:
    """Rebuild all chunks and vectors with the current settings, derive every paper's
    aliases again from its stored metadata and text, and compute the sentence signals;
    returns the chunk count."""
    embedder = library.embedder

    def rebuild(paper: Paper, pages: list[Page]) -> tuple[list[Chunk], np.ndarray]:
        chunks = chunker.chunk(paper.id, pages)
        vectors, rows = embed_chunks(embedder, pages, chunks,
                                     [embed_text(paper.title, c.section, c.text)
                                      for c in chunks])
        library.put_sentences(paper.id, chunks, rows)  # keyed by text: valid after the swap
        return chunks, vectors

    total = library.reindex(rebuild, with_aliases)
    library.complete_sentences()
    return total
