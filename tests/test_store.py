"""The SQLite store: readers in other threads never see a writer's uncommitted rows."""

from __future__ import annotations

import threading
from pathlib import Path

from index.store import Store


def test_uncommitted_rows_are_invisible_to_other_threads(tmp_path: Path) -> None:
    store = Store(tmp_path / "library.sqlite")
    inside, release = threading.Event(), threading.Event()

    def writer() -> None:
        with store.transaction() as db:
            db.execute("INSERT INTO papers VALUES ('p1','T','[]',2020,'','[]',NULL,NULL,NULL,"
                       "'src','hash',1,'pdf','now','[]','[]','')")
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
    con.commit()
    con.close()
    store = Store(path)
    (paper,) = store.papers()
    assert (paper.id, paper.aliases, paper.flags, paper.pdf_file) == ("p1", (), (), "")
    store.close()
