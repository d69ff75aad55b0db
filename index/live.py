"""How one process follows the library's search indexes (issue 14, items 2, 3 and 9).

Readers (chat threads, `search`, `ask`) search the current :class:`Snapshot`: an object
that never changes, swapped in by one assignment, so a search never sees an index that is
being changed and needs no lock. Before each search a reader compares the SQLite state
(generation, removals, store id: three meta rows) with its snapshot's. When they differ:

* a writer saved a newer index (built.json changed): the reader loads it; one thread loads
  while the others keep searching the snapshot they have (a thread with none waits);
* no saved index matches: a writer is at work and saves when it is done. Meanwhile the
  previous snapshot is served: its chunk ids may name chunks since removed, which the
  caller skips, but never other chunks (ids are not reused). If instead no writer holds the
  lock (a writer died, the library comes from an older version, an index file is corrupt),
  a background thread takes the writer lock, at most once a second, and does the writer's
  job once: it extends or rebuilds what is missing and saves it for every process. The
  previous snapshot is served meanwhile; only a process with none waits for it, and if
  the writer lock is busy as well it builds one in memory, unsaved.

Nothing is ever rebuilt on a reader's request path, and readers never write index files.

Writers (whoever holds the writer lock: ingest, remove, reindex) make the next snapshot
from the last one (``index.snapshot``), save it (``index.files``), swap it in, and then
merge BM25 shards when due (``BM25Index.compacted``) and save and swap again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from core.errors import LibraryBusyError, LibraryError, PaperchatError
from core.settings import IndexSettings
from index.files import IndexFiles, Stamp
from index.snapshot import Snapshot, State, next_snapshot
from index.store import Store

log = logging.getLogger(__name__)
REPAIR_INTERVAL_S = 1.0  # a reader tries the writer's job at most this often
REPAIR_ERRORS = (PaperchatError, OSError, RuntimeError, ValueError)


class Writer(Protocol):
    """The writer lock of the library (``Catalog``)."""

    def writer(self, wait: bool = True) -> AbstractContextManager[object]: ...

    def holds_writer(self) -> bool: ...


class LiveIndex:
    def __init__(self, store: Store, settings: IndexSettings, folder: Path, lock: Writer,
                 check: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.settings = settings
        self.files = IndexFiles(folder, settings)
        self.lock = lock
        self.check = check  # raises when the library no longer fits this process's settings
        self._snap: Snapshot | None = None
        self._seen: Stamp | None = None  # the built.json last loaded or written here
        self._load_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._cond = threading.Condition()
        self._repair: threading.Thread | None = None
        self._repair_error: BaseException | None = None
        self._next_repair = 0.0
        self.built_here = 0  # snapshots this process made from SQLite rather than loaded
        self.loaded = 0  # saved snapshots this process loaded

    # -- readers ---------------------------------------------------------------------
    def current(self) -> Snapshot:
        """The snapshot to search now (see the module's docstring)."""
        snap = self._snap
        state = self.store.state()
        if snap is not None and snap.state == state:
            return snap
        self.check()
        self._load_saved(state, wait=snap is None)
        snap = self._snap
        if snap is None:
            self._start_repair(now=True)
            return self._wait_for_snapshot()
        if snap.state != state and not self._load_lock.locked():  # (a load may be enough)
            self._start_repair()
        return snap

    def peek(self) -> Snapshot | None:
        """The snapshot in memory, without looking at the files (tests, benchmarks)."""
        return self._snap

    def _load_saved(self, state: State, wait: bool) -> None:
        """Load built.json's snapshot when it changed since this process last looked."""
        stamp = self.files.stamp()
        if stamp is None or stamp == self._seen or not self._load_lock.acquire(blocking=wait):
            return
        try:
            for _ in range(2):  # a save may delete the parts of the built.json just read
                stamp = self.files.stamp()
                if stamp is None or stamp == self._seen:
                    return
                got = self.files.load(state[2])
                if got is not None and got[1]:
                    self.loaded += 1
                    self._swap(got[0], stamp)
                    return
                if self.files.stamp() == stamp:  # unusable as it stands: leave it to a writer
                    self._seen = stamp
                    return
        finally:
            self._load_lock.release()

    def _swap(self, snap: Snapshot, stamp: Stamp | None = None) -> None:
        """Make ``snap`` the current snapshot unless the current one is newer."""
        with self._cond:
            cur = self._snap
            if cur is None or cur.state[2] != snap.state[2] or snap.generation >= cur.generation:
                self._snap = snap
            if stamp is not None:
                self._seen = stamp
            self._cond.notify_all()

    def _start_repair(self, now: bool = False) -> None:
        """Start the background repair unless one runs, or (unless ``now``) one started
        less than REPAIR_INTERVAL_S ago."""
        with self._cond:
            alive = self._repair is not None and self._repair.is_alive()
            if alive or (not now and time.monotonic() < self._next_repair):
                return
            self._next_repair = time.monotonic() + REPAIR_INTERVAL_S
            self._repair_error = None
            self._repair = threading.Thread(target=self._repair_run, name="paperchat-index")
            self._repair.start()

    def _repair_run(self) -> None:
        """The writer's job, done by a reader when no writer is at work (see above)."""
        try:
            try:
                with self.lock.writer(wait=False):
                    self.publish()
            except LibraryBusyError:
                if self._snap is None:  # nothing to serve until the writer saves: build one
                    got = self.files.load(self.store.state()[2])
                    base = got[0] if got is not None else None
                    self._swap(next_snapshot(self.store, self.settings, base))
                    self.built_here += 1
        except REPAIR_ERRORS as err:
            log.warning("building the search index failed: %s", err)
            self._repair_error = err
        finally:
            with self._cond:
                self._cond.notify_all()

    def _wait_for_snapshot(self) -> Snapshot:
        with self._cond:
            while self._snap is None:
                if self._repair_error is not None:
                    raise self._repair_error
                if self._repair is None or not self._repair.is_alive():
                    raise LibraryError("The search index could not be built.",
                                       "See the log above, then retry.")
                self._cond.wait(0.5)
            return self._snap

    # -- writers ---------------------------------------------------------------------
    def publish(self) -> Snapshot:
        """Bring the saved indexes and this process's snapshot up to the SQLite file. The
        caller holds the writer lock."""
        with self._publish_lock:
            state = self.store.state()
            base, complete = self._base(state)
            if base is not None and complete and base.state == state:
                snap = base
            else:
                snap = next_snapshot(self.store, self.settings, base)
                self.built_here += 1
            if not snap.token or snap.token != self._saved_token():
                self._save_and_swap(snap)
            else:
                self._swap(snap)
            assert snap.bm25 is not None
            compact = snap.bm25.compacted(self.settings.bm25_max_shards)
            if compact is not None:
                snap = self._save_and_swap(snap.with_bm25(compact))
            return self._snap or snap

    def publish_if_stale(self) -> None:
        """At the end of a writer's work: publish unless the saved index is current."""
        built = self.files.read_built()
        if built is None or self.files.state_of(built) != self.store.state():
            self.publish()

    def install(self, snap: Snapshot) -> None:
        """Save and swap in a snapshot the writer made itself (``reindex``)."""
        with self._publish_lock:
            self._save_and_swap(snap)

    def _save_and_swap(self, snap: Snapshot) -> Snapshot:
        snap = self.files.save(snap)
        self._swap(snap, self.files.stamp())
        return snap

    def _saved_token(self) -> str:
        built = self.files.read_built()
        return str(built.get("token", "")) if built is not None else ""

    def _base(self, state: State) -> tuple[Snapshot | None, bool]:
        """What the next snapshot is made from, and whether all of it is there: this
        process's snapshot, or the saved one when that is newer (another process wrote
        since) or this process has none."""
        mine = self._snap if self._snap is not None and self._snap.state[2] == state[2] else None
        built = self.files.read_built()
        if (built is not None and built.get("store_id") == state[2]
                and (mine is None or int(built["generation"]) > mine.generation)):
            got = self.files.load(state[2])
            if got is not None:
                return got
        return mine, mine is not None

    def refresh(self) -> None:
        """Make this process's snapshot current: as the writer when this thread holds the
        writer lock or can take it, else load what the writer saved last."""
        if self.lock.holds_writer():
            self.publish()
            return
        try:
            with self.lock.writer(wait=False):
                self.publish()
        except LibraryBusyError:
            self.current()

    def close(self) -> None:
        repair = self._repair
        if repair is not None:
            repair.join()
