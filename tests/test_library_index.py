"""The derived vector index follows the SQLite file without needless rebuilds: a new process
extends the saved index with the papers added since, removed papers' rows are masked out of
an HNSW graph (it cannot delete) until they are too many, and `reindex`'s new file (whose
chunk ids start again) never reuses an index built from the old one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.settings import Settings
from core.types import Chunk, Page, Paper
from index.library import Library
from tests.helpers import make_settings

DIM = 32
CHUNKS = 40  # per paper


class UnitEmbedder:
    """The manifest needs a model name and a size; vectors are given directly."""

    name = "test-embedder"
    dim = DIM

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        raise AssertionError("not used: the tests store vectors they made")


def hnsw_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", index={"approx_threshold": 50, "use_gpu": "never"},
                         embedding={"model": "test-embedder"})


def paper_vectors(n: int) -> np.ndarray:
    x = np.random.default_rng(n).standard_normal((CHUNKS, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def add(library: Library, n: int) -> np.ndarray:
    pid = f"p{n}"
    paper = Paper(pid, f"Paper {n}", (), 2020, "", (), None, None, None, "test", pid, 1)
    chunks = [Chunk(pid, i, f"passage {i} of paper {n}", 1, 1, 0, 10) for i in range(CHUNKS)]
    vectors = paper_vectors(n)
    library.add_paper(paper, [Page(pid, 1, "text")], chunks, vectors)
    return vectors


def open_library(settings: Settings) -> Library:
    return Library(settings, UnitEmbedder())  # type: ignore[arg-type]


def top_paper(library: Library, query: np.ndarray) -> str:
    hit_id = library.dense_search(query, 1)[0][0]
    return library.chunks([hit_id])[hit_id].paper_id


def test_a_new_process_extends_the_saved_hnsw_index(tmp_path: Path) -> None:
    settings = hnsw_settings(tmp_path)
    first = open_library(settings)
    for n in range(6):
        add(first, n)
    first.refresh()
    assert first._vectors is not None and first._vectors.kind == "hnsw"
    first.close()
    second = open_library(settings)  # as the next `paperchat ingest` would
    assert second.remove_paper("p1")
    v6 = add(second, 6)
    second.refresh()
    vectors = second._vectors
    assert vectors is not None and len(vectors) == 7 * CHUNKS  # the old graph, extended
    assert np.count_nonzero(vectors.ids < 0) == CHUNKS  # p1's rows masked, not rebuilt
    assert top_paper(second, v6[5]) == "p6"
    hits = second.dense_search(paper_vectors(1)[0], 6 * CHUNKS)
    assert len(hits) == 6 * CHUNKS  # every live chunk can be found ...
    assert not {cid for cid, _ in hits} & set(range(CHUNKS + 1, 2 * CHUNKS + 1))  # ... no p1
    second.close()
    third = open_library(settings)  # loads the saved index, masks included
    third.refresh()
    assert third._vectors is not None and np.count_nonzero(third._vectors.ids < 0) == CHUNKS
    assert third.chunks([h for h, _ in third.dense_search(paper_vectors(1)[0], 5)])
    third.close()


def test_too_many_removals_rebuild_the_graph(tmp_path: Path) -> None:
    settings = hnsw_settings(tmp_path)
    library = open_library(settings)
    for n in range(4):
        add(library, n)
    library.refresh()
    library.remove_paper("p0")
    library.refresh()  # a quarter of the rows gone: more than MAX_MASKED
    assert library._vectors is not None
    assert len(library._vectors) == 3 * CHUNKS and (library._vectors.ids > 0).all()
    assert top_paper(library, paper_vectors(2)[7]) == "p2"
    library.close()


def test_reindexed_file_is_never_searched_with_the_old_index(tmp_path: Path) -> None:
    from index.store import Store

    settings = hnsw_settings(tmp_path)
    library = open_library(settings)
    for n in range(3):
        add(library, n)
    library.refresh()
    library.close()
    # What `paperchat reindex` does: a new SQLite file with the same papers in another
    # order (so its chunk ids mean other chunks), a new store_id, then renamed into place.
    target = settings.data_dir / "library.sqlite"
    old = Store(target)
    counters = old.counters()
    meta = old.meta()
    tmp = target.with_name("new.sqlite")
    new = Store(tmp)
    with new.transaction() as db:
        new.set_meta(db, {**meta, "generation": str(counters[0]),
                          "removals": str(counters[1] + 1), "store_id": "another-file"})
    for n in (2, 1, 0):
        pid = f"p{n}"
        new.put_paper(old.paper(pid), old.pages_of(pid), old.chunks_of(pid), paper_vectors(n))
    old.close()
    new.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    new.close()
    tmp.replace(target)
    reopened = open_library(settings)
    for n in range(3):
        assert top_paper(reopened, paper_vectors(n)[3]) == f"p{n}"
    assert reopened._vectors is not None and (reopened._vectors.ids > 0).all()
    reopened.close()
