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
                       "'src','hash',1,'pdf','now')")
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
