"""The SQLite store: readers in other threads never see a writer's uncommitted rows."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from index.store import Store


def test_uncommitted_rows_are_invisible_to_other_threads(tmp_path: Path) -> None:
    store = Store(tmp_path / "library.sqlite")
    inside, release = threading.Event(), threading.Event()

    def writer() -> None:
        with store.transaction() as db:
            db.execute("INSERT INTO papers VALUES ('p1','T','[]',2020,'','[]',NULL,NULL,NULL,"
                       "'src','hash',1,'pdf','now','[]','[]','',0)")
            inside.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    assert inside.wait(10)
    assert store.papers() == [], "a chat must not read a paper that is half written"
    release.set()
    t.join()
    assert [p.id for p in store.papers()] == ["p1"]
    store.close()


def test_a_library_file_of_the_first_schema_gains_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    from index.store import SCHEMA

    path = tmp_path / "library.sqlite"
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    con.execute("INSERT INTO papers VALUES ('p1','T','[]',2020,'','[]',NULL,NULL,NULL,"
                "'src','hash',1,'pdf','now')")
    con.executemany("INSERT INTO chunks (paper_id, ordinal, page_start, page_end, char_start,"
                    " char_end, section, is_reference, text) VALUES ('p1',?,1,1,0,1,'',0,'x')",
                    [(n,) for n in range(3)])
    con.commit()
    con.close()
    store = Store(path)
    (paper,) = store.papers()
    assert (paper.id, paper.aliases, paper.flags, paper.pdf_file) == ("p1", (), (), "")
    assert paper.chunks == 3 and store.chunk_count() == 3  # counted once, then kept
    store.close()


def test_opening_does_not_wait_for_a_writers_transaction(tmp_path: Path) -> None:
    """`reindex` holds one long write transaction; a chat or `list` opening the library
    meanwhile must not wait for it (the schema check only reads an up-to-date file)."""
    import sqlite3

    path = tmp_path / "library.sqlite"
    Store(path).close()
    writer = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO meta VALUES ('x', '1')")
    store = Store(path)
    assert store.chunk_count() == 0
    writer.execute("ROLLBACK")
    writer.close()
    store.close()


def test_a_short_write_is_a_full_disk(tmp_path: Path) -> None:
    """numpy reports a write the disk could not take as an OSError without errno."""
    from core.errors import DiskFullError
    from index.store import disk_errors

    with pytest.raises(DiskFullError), disk_errors(tmp_path):
        raise OSError("4600 requested and 2016 written")
    with pytest.raises(PermissionError), disk_errors(tmp_path):
        raise PermissionError(13, "Permission denied")
