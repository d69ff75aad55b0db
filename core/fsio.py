"""Durable file writes, in one place: write beside the target, flush and fsync, rename over
it, fsync the folder, so a crash leaves either the old file or the new one, never a torn one.
A full disk becomes :class:`DiskFullError` (nothing changed)."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from core.errors import DiskFullError


@contextmanager
def disk_full_as_error(path: Path) -> Iterator[None]:
    """Turn ENOSPC into DiskFullError (naming ``path``); other OS errors pass."""
    try:
        yield
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise DiskFullError(str(path)) from err
        raise


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, target: Path) -> None:
    """Rename a finished (fsynced) file or folder over ``target`` and fsync the folder."""
    os.replace(tmp, target)
    fsync_dir(target.parent)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` atomically: ``write(fh)`` fills a temporary file beside it."""
    with disk_full_as_error(path.parent):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            replace_durably(Path(tmp), path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_tree(folder: Path) -> None:
    """fsync every file in ``folder`` (recursively) and the folders themselves, before the
    folder is renamed into place."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))
