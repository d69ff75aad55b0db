"""The derived indexes follow the SQLite file (real FAISS, real SQLite, vectors made here):
writers extend and save them, readers load what was saved and never build on their request
path, removed papers are masked, an ingest adds a BM25 shard, index files are fsynced and a
corrupt one is rebuilt, `reindex` works in place, and the counts are kept, not counted."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings
from core.types import Chunk, Page, Paper
from index.library import Library
from index.live import REPAIR_INTERVAL_S
from index.snapshot import Snapshot
from tests.helpers import CORPUS_PDFS, make_settings

DIM = 32
CHUNKS = 40  # per paper


class UnitEmbedder:
    """The manifest needs a model name and a size; vectors are given directly."""

    name = "test-embedder"
    dim = DIM
    backend = "torch"
    vectors = "fp32"

    def embed(self, texts: list[str], kind: str = "passage") -> np.ndarray:
        raise AssertionError("not used: the tests store vectors they made")


def lib_settings(tmp_path: Path, approx_threshold: int = 50, **index: object) -> Settings:
    return make_settings(tmp_path / "data", index={"approx_threshold": approx_threshold,
                                                   "use_gpu": "never", **index},
                         embedding={"model": "test-embedder"})


def paper_vectors(n: int) -> np.ndarray:
    x = np.random.default_rng(n).standard_normal((CHUNKS, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def tag(n: int, i: int) -> str:
    """A word only chunk ``i`` of paper ``n`` holds."""
    return "kw" + "".join("abcdefghij"[int(d)] for d in f"{n:02d}{i:03d}")


def add(library: Library, n: int, chunks: int = CHUNKS) -> np.ndarray:
    pid = f"p{n}"
    paper = Paper(pid, f"Paper {n}", (), 2020, "", (), None, None, None, "test", pid, 1)
    texts = [f"passage {i} of paper {n} {tag(n, i)}" for i in range(chunks)]
    vectors = paper_vectors(n)[:chunks]
    library.add_paper(paper, [Page(pid, 1, "text")], [Chunk(pid, i, t, 1, 1, 0, 10)
                                                       for i, t in enumerate(texts)], vectors)
    return vectors


def open_library(settings: Settings) -> Library:
    return Library(settings, UnitEmbedder())  # type: ignore[arg-type]


def snapshot(library: Library) -> Snapshot:
    snap = library.live.peek()
    assert snap is not None
    return snap


def top_paper(library: Library, query: np.ndarray) -> str:
    hit_id = library.dense_search(query, 1)[0][0]
    return library.chunks([hit_id])[hit_id].paper_id


def built(settings: Settings) -> dict[str, object]:
    return dict(json.loads((settings.data_dir / "index" / settings.library_key()
                            / "built.json").read_text()))


def index_files(settings: Settings) -> dict[str, int]:
    """Every file under index/ with its modification time (what a reader must not touch)."""
    root = settings.data_dir / "index"
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


# -- vectors: extended, masked, rebuilt (issue 14.2: always on a copy) --------------------
def test_a_new_process_extends_the_saved_hnsw_index(tmp_path: Path) -> None:
    settings = lib_settings(tmp_path)
    first = open_library(settings)
    with first.writer():
        for n in range(6):
            add(first, n)
    assert snapshot(first).vectors is not None
    first.close()
    second = open_library(settings)  # as the next `paperchat ingest` would
    with second.writer():
        assert second.remove_paper("p1")
        v6 = add(second, 6)
    vectors = snapshot(second).vectors
    assert vectors is not None and vectors.kind == "hnsw"
    assert len(vectors) == 7 * CHUNKS  # the old graph, extended
    assert np.count_nonzero(vectors.ids < 0) == CHUNKS  # p1's rows masked, not rebuilt
    assert top_paper(second, v6[5]) == "p6"
    hits = second.dense_search(paper_vectors(1)[0], 6 * CHUNKS)
    assert len(hits) == 6 * CHUNKS  # every live chunk can be found ...
    assert not {cid for cid, _ in hits} & set(range(CHUNKS + 1, 2 * CHUNKS + 1))  # ... no p1
    second.close()
    third = open_library(settings)  # loads the saved index, masks included
    assert third.chunks([h for h, _ in third.dense_search(paper_vectors(1)[0], 5)])
    assert np.count_nonzero(snapshot(third).vectors.ids < 0) == CHUNKS  # type: ignore[union-attr]
    assert third.live.built_here == 0 and third.live.loaded == 1
    third.close()


def test_too_many_removals_rebuild_the_graph(tmp_path: Path) -> None:
    library = open_library(lib_settings(tmp_path))
    with library.writer():
        for n in range(4):
            add(library, n)
    before = snapshot(library).vectors
    with library.writer():
        library.remove_paper("p0")  # a quarter of the rows gone: more than MAX_MASKED
    vectors = snapshot(library).vectors
    assert vectors is not None and len(vectors) == 3 * CHUNKS and (vectors.ids > 0).all()
    assert before is not None and len(before) == 4 * CHUNKS  # the old one was not changed
    assert top_paper(library, paper_vectors(2)[7]) == "p2"
    library.close()


# -- readers load what the writer saved, and never build (issue 14.3) -------------------
def test_a_reader_loads_the_index_a_writer_saved(tmp_path: Path) -> None:
    settings = lib_settings(tmp_path)
    writer = open_library(settings)
    with writer.writer():
        for n in range(3):
            add(writer, n)
    reader = open_library(settings)  # the chat process, running all along
    assert top_paper(reader, paper_vectors(1)[4]) == "p1"
    with writer.writer():  # `paperchat ingest` in another process
        v3 = add(writer, 3)
        writer.remove_paper("p0")
        writer.refresh()
    files = index_files(settings)
    assert top_paper(reader, v3[2]) == "p3"  # its next search sees the saved index ...
    assert index_files(settings) == files, "the reader wrote index files"
    assert reader.bm25_search(tag(3, 2), 1)[0][0] == reader.chunks_of("p3")[2].id
    assert not reader.bm25_search(tag(0, 2), 5)
    assert reader.live.built_here == 0 and reader.live.loaded == 2  # ... loaded, not built
    writer.close()
    reader.close()


def test_a_reader_serves_its_snapshot_while_a_writer_works(tmp_path: Path) -> None:
    """Papers committed by a writer that has not saved the indexes yet: the reader keeps
    its snapshot (stale, never wrong), builds nothing and writes no index file; once the
    writer lock is free (the writer died), one background repair saves the indexes."""
    settings = lib_settings(tmp_path)
    library = open_library(settings)
    with library.writer():
        add(library, 0)
    files = index_files(settings)
    with open(settings.data_dir / ".write.lock", "w") as lock:  # another process's ingest
        fcntl.flock(lock, fcntl.LOCK_EX)
        v1 = add(library, 1)  # committed by it; the indexes are not saved yet
        for _ in range(3):
            assert top_paper(library, v1[0]) == "p0"  # the previous snapshot, served
            time.sleep(REPAIR_INTERVAL_S)
        assert index_files(settings) == files, "a reader wrote index files"
        assert library.live.built_here == 1, "a reader built an index"  # 1: the writer's
        fcntl.flock(lock, fcntl.LOCK_UN)  # the ingest dies without saving
    deadline = time.monotonic() + 30
    while top_paper(library, v1[0]) != "p1":
        assert time.monotonic() < deadline, "the indexes were never repaired"
        time.sleep(0.2)
    assert built(settings)["generation"] == library.counters()[0]
    library.close()


def test_a_library_from_an_older_version_is_built_once_and_saved(tmp_path: Path) -> None:
    settings = lib_settings(tmp_path)
    library = open_library(settings)
    with library.writer():
        add(library, 0)
        add(library, 1)
    library.close()
    folder = settings.data_dir / "index" / settings.library_key()
    shutil.rmtree(folder)  # what an older version left: its own files, no built.json of ours
    folder.mkdir()
    (folder / "built.json").write_text('{"generation": 2, "removals": 0, "kind": "flat"}')
    (folder / "vectors.faiss").write_bytes(b"old")
    reader = open_library(settings)
    assert top_paper(reader, paper_vectors(1)[3]) == "p1"  # waited: nothing to serve
    reader.close()  # the build finishes and is saved before close returns
    assert built(settings)["format"] == 2 and not (folder / "vectors.faiss").exists()
    again = open_library(settings)
    assert top_paper(again, paper_vectors(0)[3]) == "p0"
    assert again.live.built_here == 0
    again.close()


# -- incremental BM25 (issue 11.3) ------------------------------------------------------
def test_an_ingest_adds_a_bm25_shard_and_the_writer_compacts_them(tmp_path: Path) -> None:
    settings = lib_settings(tmp_path, bm25_max_shards=3)
    library = open_library(settings)
    shards: list[list[str]] = []
    for n in range(5):
        with library.writer():  # one ingest each: a large library, then small papers
            add(library, n, chunks=CHUNKS if n == 0 else 5)
        shards.append(list(built(settings)["bm25"]))  # type: ignore[call-overload]
    assert [len(s) for s in shards] == [1, 2, 3, 2, 3]  # past 3: the newer ones merged
    assert shards[1][:1] == shards[0] and shards[2][:2] == shards[1]  # earlier ones kept
    assert shards[3][0] == shards[0][0]  # the largest stays as it was
    for n in range(5):
        assert library.bm25_search(tag(n, 3), 1)[0][0] == library.chunks_of(f"p{n}")[3].id
    library.close()


# -- index files (issue 14.9) -----------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate vectors", "truncate bm25", "delete bm25",
                                    "garble built.json", "delete built.json"])
def test_a_corrupt_index_file_is_rebuilt(tmp_path: Path, damage: str) -> None:
    settings = lib_settings(tmp_path)
    library = open_library(settings)
    with library.writer():
        for n in range(3):
            add(library, n)
    library.close()
    folder = settings.data_dir / "index" / settings.library_key()
    info = built(settings)
    vectors = folder / str(info["vectors"]) / "vectors.faiss"
    shard = folder / info["bm25"][0]  # type: ignore[index]
    if damage == "truncate vectors":
        vectors.write_bytes(vectors.read_bytes()[: vectors.stat().st_size // 2])
    elif damage == "truncate bm25":
        (shard / "rows.npy").write_bytes((shard / "rows.npy").read_bytes()[:-16])
    elif damage == "delete bm25":
        shutil.rmtree(shard)
    elif damage == "garble built.json":
        (folder / "built.json").write_text('{"format": 2, "generation"')
    else:
        (folder / "built.json").unlink()
    reader = open_library(settings)
    assert top_paper(reader, paper_vectors(2)[5]) == "p2"
    assert reader.bm25_search(tag(1, 5), 1)[0][0] == reader.chunks_of("p1")[5].id
    reader.close()
    again = open_library(settings)  # the repair was saved
    assert top_paper(again, paper_vectors(0)[1]) == "p0"
    assert again.live.loaded == 1 and again.live.built_here == 0
    again.close()


def test_index_files_and_their_folders_are_fsynced(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    settings = lib_settings(tmp_path)
    library = open_library(settings)
    synced: set[tuple[int, int]] = set()
    real = os.fsync

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        synced.add((st.st_dev, st.st_ino))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with library.writer():
        add(library, 0)
        library.refresh()
    folder = settings.data_dir / "index" / settings.library_key()
    wanted = [folder.parent, folder, *folder.rglob("*")]
    missing = [p for p in wanted if (p.stat().st_dev, p.stat().st_ino) not in synced]
    assert not missing, f"not fsynced: {missing}"
    library.close()


def test_concurrent_refreshes_by_two_processes_leave_a_loadable_index(tmp_path: Path) -> None:
    """Two processes that find the saved index stale at once (each a Library of its own):
    one builds and saves, the other loads or waits; no error, and the files load."""
    settings = lib_settings(tmp_path)
    library = open_library(settings)
    with library.writer():
        add(library, 0)
    for n in range(1, 4):
        add(library, n)  # committed without the writer's save, as after a crash
        others = [open_library(settings) for _ in range(3)]

        def search(lib: Library, q: np.ndarray) -> None:
            lib.refresh()
            lib.dense_search(q, 3)

        with ThreadPoolExecutor(len(others)) as pool:
            for done in [pool.submit(search, o, paper_vectors(n)[0]) for o in others]:
                done.result()  # an error in any of them fails the test here
        for o in others:
            o.close()
    final = open_library(settings)
    assert top_paper(final, paper_vectors(3)[0]) == "p3" and final.live.built_here == 0
    final.close()
    library.close()


# -- reindex in place (issue 14.4) ------------------------------------------------------
def test_reindex_keeps_the_file_and_gives_new_ids(tmp_path: Path) -> None:
    settings = lib_settings(tmp_path)
    library = open_library(settings)
    with library.writer():
        for n in range(3):
            add(library, n)
    path = settings.data_dir / "library.sqlite"
    inode = path.stat().st_ino
    old_ids = {c.id for n in range(3) for c in library.chunks_of(f"p{n}")}

    def rebuild(paper: Paper, pages: list[Page]) -> tuple[list[Chunk], np.ndarray]:
        n = int(paper.id[1:])
        chunks = [Chunk(paper.id, i, f"new passage {i} of {n}", 1, 1, 0, 5) for i in range(10)]
        return chunks, paper_vectors(n + 10)[:10]

    with library.writer():
        assert library.reindex(rebuild) == 30
    assert path.stat().st_ino == inode, "the database file was replaced under its readers"
    new_ids = {c.id for n in range(3) for c in library.chunks_of(f"p{n}")}
    assert min(new_ids) > max(old_ids)  # never an old id with a new passage
    assert top_paper(library, paper_vectors(11)[4]) == "p1"
    assert library.live.built_here == 1  # the first; reindex builds inside its transaction
    library.close()


def test_removal_masks_the_paper_and_deletes_its_pdf_copy_reindex_keeps_them(
        tmp_path: Path) -> None:
    """The library's PDF copies (index.pdfstore) follow the papers through the snapshots:
    a removal deletes the paper's copy and masks its passages for the writer and for a
    reader process; a reindex keeps every paper's copy and its ``pdf_file``."""
    settings = lib_settings(tmp_path)
    library = open_library(settings)
    files = {}
    with library.writer():
        for n, name in enumerate(("gpt1.pdf", "1910.13461.pdf")):
            pdf, pid = CORPUS_PDFS / name, f"p{n}"
            digest = hashlib.sha256(pdf.read_bytes()).hexdigest()
            files[n] = library.pdfs.add(pdf, digest)
            paper = Paper(pid, f"Paper {n}", (), 2020, "", (), None, None, None, str(pdf),
                          digest, 1, pdf_file=files[n])
            library.add_paper(paper, [Page(pid, 1, "text")],
                              [Chunk(pid, i, f"passage {i} of {n}", 1, 1, 0, 10)
                               for i in range(CHUNKS)], paper_vectors(n))
    reader = open_library(settings)
    assert top_paper(reader, paper_vectors(0)[3]) == "p0"
    with library.writer():
        assert library.remove_paper("p0")
    assert not (settings.data_dir / files[0]).exists()
    assert (settings.data_dir / files[1]).is_file()
    for lib in (library, reader):
        hits = [h for h, _ in lib.dense_search(paper_vectors(0)[3], 2 * CHUNKS)]
        assert {c.paper_id for c in lib.chunks(hits).values()} == {"p1"}
    assert reader.live.built_here == 0  # it loaded the writer's masked index

    def rebuild(paper: Paper, pages: list[Page]) -> tuple[list[Chunk], np.ndarray]:
        chunks = [Chunk(paper.id, i, f"new {i}", 1, 1, 0, 5) for i in range(5)]
        return chunks, paper_vectors(7)[:5]

    with library.writer():
        assert library.reindex(rebuild) == 5
    kept = library.paper("p1")
    assert kept is not None and kept.pdf_file == files[1]
    assert ((settings.data_dir / files[1]).read_bytes()
            == (CORPUS_PDFS / "1910.13461.pdf").read_bytes())
    reader.close()
    library.close()


# -- counts kept, not counted (issue 14.12) ---------------------------------------------
def test_counts_stay_right_through_add_replace_remove_and_reindex(tmp_path: Path) -> None:
    library = open_library(lib_settings(tmp_path))
    db = library.store.db

    def check() -> None:
        (n,) = db.execute("SELECT COUNT(*) FROM chunks").fetchone()
        per_paper = dict(db.execute("SELECT paper_id, COUNT(*) FROM chunks GROUP BY paper_id"))
        statements: list[str] = []
        db.set_trace_callback(statements.append)
        try:
            assert library.chunk_count() == n
            assert {p.id: p.chunks for p in library.papers()} == per_paper
            one = library.paper("p1")
            assert one is None or one.chunks == per_paper["p1"]
        finally:
            db.set_trace_callback(None)
        scans = [s for s in statements if "COUNT(" in s.upper() or "GROUP BY" in s.upper()]
        assert not scans, f"rows counted per call: {scans}"

    with library.writer():
        for n in range(3):
            add(library, n)
        check()
        add(library, 1, chunks=25)  # a new version replaces the paper
        check()
        library.remove_paper("p0")
        check()
        library.reindex(lambda paper, pages: ([Chunk(paper.id, i, "x", 1, 1, 0, 1)
                                               for i in range(7)], paper_vectors(9)[:7]))
        check()
    manifest = json.loads((library.dir / "manifest.json").read_text())
    assert (manifest["papers"], manifest["chunks"]) == ("2", "14")
    library.close()
