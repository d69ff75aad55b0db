"""The saved indexes of a library, in ``<data_dir>/index/<library key>/``:

    built.json          the commit record: the SQLite state the indexes were built at and
                        the parts that hold them, with every file's size
    vectors-<id>/       a vector index (``VectorIndex.save``)
    bm25-<id>/          a BM25 shard (``Shard.save``); one more per ingest
    dead-<id>/          the chunk ids masked out of the shards (removed papers)

Parts never change once written: a save writes the new ones under temporary names, fsyncs
them and renames them in (fsyncing the folder), then replaces built.json atomically (the
commit point), then deletes the parts it no longer names. A crash at any moment leaves the
previous built.json and its parts. Only a writer (holding the library's writer lock) saves.

Loading checks every file's size against built.json before reading it; a part that is
missing, truncated or unreadable comes back as None and the writer rebuilds that part.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from core.fsio import atomic_write_text, fsync_dir, fsync_tree
from core.settings import IndexSettings
from core.text import TOKENIZER_VERSION
from index.bm25 import BM25Index, Shard
from index.snapshot import Snapshot, State
from index.store import disk_errors
from index.vectors import VectorIndex

log = logging.getLogger(__name__)
FORMAT = 2
# What a missing, truncated or garbled file raises: FAISS RuntimeError, NumPy ValueError or
# EOFError, OSError, malformed JSON (ValueError), a built.json lacking a field (KeyError).
LOAD_ERRORS = (OSError, ValueError, EOFError, RuntimeError, KeyError, TypeError)
Stamp = tuple[int, int, int]


class IndexFiles:
    def __init__(self, folder: Path, settings: IndexSettings) -> None:
        self.folder = folder
        self.settings = settings
        self.built_path = folder / "built.json"

    def stamp(self) -> Stamp | None:
        """Changes whenever built.json is replaced (one stat; readers ask on each change of
        the SQLite file)."""
        try:
            st = os.stat(self.built_path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def read_built(self) -> dict[str, Any] | None:
        """The current built.json of this format, None when there is none or it is garbled
        (an older version's, a torn write from before fsync)."""
        try:
            built = json.loads(self.built_path.read_text())
        except (OSError, ValueError):
            return None
        ok = isinstance(built, dict) and built.get("format") == FORMAT
        return built if ok else None

    @staticmethod
    def state_of(built: dict[str, Any]) -> State:
        return int(built["generation"]), int(built["removals"]), str(built["store_id"])

    # -- loading ---------------------------------------------------------------------
    def load(self, store_id: str) -> tuple[Snapshot, bool] | None:
        """The saved snapshot and whether all of it loaded (a part that did not is None),
        or None when nothing usable is saved for the SQLite file ``store_id``."""
        built = self.read_built()
        if built is None or built.get("store_id") != store_id:
            return None
        try:
            state, dim, sizes = self.state_of(built), int(built["dim"]), dict(built["sizes"])
        except LOAD_ERRORS:
            return None
        vectors = self._part(built.get("vectors"), sizes, lambda path: VectorIndex.load(
            path, dim, self.settings, str(built["kind"])))
        bm25 = self._load_bm25(built, sizes)
        complete = bm25 is not None and (vectors is not None or not built.get("vectors"))
        saved = {"vectors": built["vectors"]} if vectors is not None else {}
        return Snapshot(state, dim, vectors, bm25, saved, str(built["token"])), complete

    def _load_bm25(self, built: dict[str, Any], sizes: dict[str, int]) -> BM25Index | None:
        if built.get("tokenizer") != TOKENIZER_VERSION:  # words made another way: rebuild
            return None
        shards = [self._part(name, sizes, Shard.load) for name in built.get("bm25", [])]
        dead = (self._part(built["dead"], sizes, lambda p: np.load(p / "dead.npy"))
                if built.get("dead") else np.zeros(0, dtype=np.int64))
        if dead is None or any(s is None for s in shards):
            return None
        return BM25Index(tuple(s for s in shards if s is not None), dead)

    def _part(self, name: str | None, sizes: dict[str, int],
              load: Callable[[Path], Any]) -> Any:
        if not name:
            return None
        path = self.folder / name
        try:
            for rel, size in sizes.items():
                if rel.split("/", 1)[0] == name and (self.folder / rel).stat().st_size != size:
                    raise ValueError(f"{self.folder / rel} is not {size} bytes")
            return load(path)
        except LOAD_ERRORS as err:
            log.warning("index file %s unusable (%s); the writer rebuilds it", path, err)
            return None

    # -- saving ----------------------------------------------------------------------
    def save(self, snap: Snapshot) -> Snapshot:
        """Write the parts of ``snap`` not saved yet, then built.json; returns ``snap`` with
        the names and token it was saved under. The caller holds the writer lock."""
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True)
            fsync_dir(self.folder.parent)
        saved = dict(snap.saved)
        parts: list[str] = []
        with disk_errors(self.folder):
            if snap.vectors is not None:
                if not (self.folder / saved.get("vectors", "-")).is_dir():
                    saved["vectors"] = self._write(f"vectors-{_uid()}", snap.vectors.save)
                parts.append(saved["vectors"])
            bm25 = snap.bm25 or BM25Index()
            for shard in bm25.shards:
                if not (self.folder / shard.name).is_dir():
                    self._write(shard.name, shard.save)
                parts.append(shard.name)
            dead = None
            if len(bm25.dead):
                dead = self._write(f"dead-{_uid()}",
                                   lambda p: np.save(p / "dead.npy", bm25.dead))
                parts.append(dead)
            token = _uid()
            built = {"format": FORMAT, "token": token, "generation": snap.state[0],
                     "removals": snap.state[1], "store_id": snap.state[2], "dim": snap.dim,
                     "kind": snap.vectors.kind if snap.vectors is not None else "",
                     "count": len(snap.vectors) if snap.vectors is not None else 0,
                     "tokenizer": TOKENIZER_VERSION, "vectors": saved.get("vectors"),
                     "bm25": [s.name for s in bm25.shards], "dead": dead,
                     "sizes": self._sizes(parts)}
            atomic_write_text(self.built_path, json.dumps(built, indent=1) + "\n")
        self._collect({*parts, self.built_path.name})
        return replace(snap, saved=saved, token=token)

    def _write(self, name: str, write: Callable[[Path], object]) -> str:
        tmp = self.folder / f".tmp-{_uid()}"
        tmp.mkdir()
        try:
            write(tmp)
            fsync_tree(tmp)
            os.replace(tmp, self.folder / name)
            fsync_dir(self.folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return name

    def _sizes(self, parts: list[str]) -> dict[str, int]:
        sizes = {}
        for name in parts:
            for path in sorted((self.folder / name).rglob("*")):
                if path.is_file():
                    sizes[path.relative_to(self.folder).as_posix()] = path.stat().st_size
        return sizes

    def _collect(self, keep: set[str]) -> None:
        """Delete what built.json no longer names: older parts, a crashed save's
        temporaries, an older version's files. A reader still loading one of them retries
        with the new built.json."""
        for path in self.folder.iterdir():
            if path.name in keep:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _uid() -> str:
    return uuid.uuid4().hex[:12]
