"""The library's own copies of its papers' PDFs: ``<data_dir>/pdf-store/<sha256>.pdf``.

A copy is named by the SHA-256 of its bytes (``Paper.content_hash``), so a name says nothing
a request could steer, two ingests of one file share one copy, and a copy left behind by a
crash between the copy and the database write is simply reused next time. ``Paper.pdf_file``
records the copy relative to the data directory (``pdf-store/<sha256>.pdf``).

Copies are written atomically and durably (:mod:`core.fsio`); a file already inside the data
directory (a download in ``pdfs/``, an upload in ``uploads/``, both written once and never
changed in place) is hard-linked instead of copied when the file system allows it.

:meth:`PdfStore.path_of` is the only way to a stored file: it accepts exactly
``pdf-store/<64 hex>.pdf`` and returns the file only when its resolved path (symbolic links
followed) lies directly in the store. Papers stored before copies were kept (``pdf_file``
empty) are served from their download or upload in the data directory when its bytes have
the paper's hash: that file is adopted into the store first.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import uuid
from pathlib import Path, PurePosixPath

from core.errors import DiskFullError, LibraryError
from core.fsio import atomic_write, disk_full_as_error, replace_durably
from core.types import Paper

log = logging.getLogger(__name__)
STORE = "pdf-store"
HASH = re.compile(r"[0-9a-f]{64}")
LEGACY_DIRS = ("pdfs", "uploads")  # where papers ingested before copies were kept lie


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _inside(path: Path, folder: Path) -> bool:
    return path.is_relative_to(folder)


class PdfStore:
    """The PDF copies of the library in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / STORE

    @staticmethod
    def name_for(content_hash: str) -> str:
        """``pdf-store/<hash>.pdf``: what ``Paper.pdf_file`` records."""
        if not HASH.fullmatch(content_hash):
            raise ValueError(f"not a SHA-256 hex digest: {content_hash!r}")
        return f"{STORE}/{content_hash}.pdf"

    def add(self, src: Path, content_hash: str) -> str:
        """Store the PDF at ``src`` (whose SHA-256 is ``content_hash``) unless a copy is
        there already; return its ``pdf_file``."""
        name = self.name_for(content_hash)
        target = self.data_dir / name
        if target.is_file() and target.stat().st_size == src.stat().st_size:
            return name
        try:
            with disk_full_as_error(self.root):
                self.root.mkdir(parents=True, exist_ok=True)
            if not self._link(src, target):
                with src.open("rb") as inp:
                    atomic_write(target, lambda out: shutil.copyfileobj(inp, out, 1 << 20))
        except DiskFullError:
            raise
        except OSError as err:
            raise LibraryError(f"Cannot store a copy of {src} in {self.root}: "
                               f"{err.strerror or err}.",
                               "Check the permissions of the data directory.") from err
        return name

    def _link(self, src: Path, target: Path) -> bool:
        """Hard-link a file of the data directory into the store (atomically); False when
        ``src`` lies elsewhere or the file system cannot link."""
        if not _inside(src.resolve(), self.data_dir.resolve()):
            return False
        tmp = self.root / f".{target.name}.{uuid.uuid4().hex}"
        try:
            os.link(src, tmp)
            os.chmod(tmp, 0o644)
            replace_durably(tmp, target)
        except OSError as err:
            log.debug("cannot link %s into the store: %s", src, err)
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def path_of(self, pdf_file: str) -> Path | None:
        """The stored file ``pdf_file`` names, or None: only ``pdf-store/<sha256>.pdf``,
        and only when the resolved file lies directly in the store."""
        rel = PurePosixPath(pdf_file or "")
        if (len(rel.parts) != 2 or rel.parts[0] != STORE or rel.suffix != ".pdf"
                or not HASH.fullmatch(rel.stem)):
            return None
        root = self.root.resolve()
        path = (root / rel.name).resolve()
        if path.parent != root or not path.is_file():
            return None
        return path

    def find(self, paper: Paper) -> Path | None:
        """The library's copy of ``paper``'s PDF: its ``pdf_file``, else the copy named by its
        hash, else (a paper ingested before copies were kept) its download or upload in the
        data directory, checked against the hash and adopted into the store. None when
        there is none."""
        for pdf_file in (paper.pdf_file, self._hash_name(paper)):
            path = self.path_of(pdf_file)
            if path is not None:
                return path
        legacy = self._legacy_file(paper)
        if legacy is None:
            return None
        return self.path_of(self.add(legacy, paper.content_hash))

    def _hash_name(self, paper: Paper) -> str:
        return self.name_for(paper.content_hash) if HASH.fullmatch(paper.content_hash) else ""

    def _legacy_file(self, paper: Paper) -> Path | None:
        """A download (``pdfs/<id>[vN].pdf``) or upload (``uploads/<name>``) with the paper's
        bytes, inside the data directory."""
        if not HASH.fullmatch(paper.content_hash):
            return None
        stem = paper.id.replace("/", "_")
        names = [f"{stem}v{paper.version}.pdf"] if paper.version else []
        names += [f"{stem}.pdf", Path(paper.source).name]
        base = self.data_dir.resolve()
        for folder in LEGACY_DIRS:
            for name in names:
                path = (base / folder / name).resolve()
                if (_inside(path, base / folder) and path.is_file()
                        and _sha256(path) == paper.content_hash):
                    return path
        return None

    def remove(self, paper: Paper) -> None:
        """Delete ``paper``'s copy (after its row is gone from the library)."""
        for pdf_file in {paper.pdf_file, self._hash_name(paper)}:
            path = self.path_of(pdf_file)
            if path is not None:
                path.unlink(missing_ok=True)
