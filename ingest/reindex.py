"""`paperchat reindex`: re-chunk and re-embed every paper from the text stored in the
library (no download), into a new database file that replaces the old one atomically."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from index.library import Library, embed_text
from index.store import Store
from ingest.chunk import Chunker


def _remove_sidecars(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def reindex(library: Library, chunker: Chunker) -> int:
    """Rebuild all chunks and vectors with the current settings; returns the chunk count."""
    embedder = library.embedder
    assert embedder is not None
    old = library.store
    target = old.path
    tmp = target.with_name(target.name + ".reindex")
    tmp.unlink(missing_ok=True)
    _remove_sidecars(tmp)
    new = Store(tmp)
    gen, removals = old.counters()
    with new.transaction() as db:
        new.set_meta(db, {**library.wanted_manifest(), "generation": str(gen),
                          "removals": str(removals), "store_id": uuid.uuid4().hex})
    total = 0
    for paper in old.papers():
        pages = old.pages_of(paper.id)
        chunks = chunker.chunk(paper.id, pages)
        vectors = embedder.embed([embed_text(paper.title, c.section, c.text) for c in chunks])
        new.put_paper(paper, pages, chunks, vectors)
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
    library.store = Store(target)
    library._vectors = None
    library.refresh()
    return total
