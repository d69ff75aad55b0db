"""PDF uploads: size-limited, checked to be PDFs, stored only inside
``<data_dir>/uploads`` under a sanitised name with a hash of the content
(``paper-3fa9c2d1.pdf``): a name like ``../../evil.pdf`` cannot leave that folder, and two
uploads of the same name but other content are two files, two papers. The name is never
trusted as an identity (``1706.03762.pdf`` is not thereby arXiv's paper): the ingest gets
``upload=True`` (see :mod:`ingest.pipeline`)."""

from __future__ import annotations

import hashlib
import re
import shutil
import unicodedata
from pathlib import Path

from core.errors import IngestError, PdfError
from core.fsio import atomic_write
from core.settings import Settings

MAX_NAME = 120


def uploads_dir(settings: Settings) -> Path:
    return settings.data_dir / "uploads"


def safe_name(name: str, digest: str = "") -> str:
    """A plain file name ending in .pdf: the last path part, letters, digits, ``._-``,
    then ``-<digest>`` when one is given."""
    base = re.split(r"[\\/]", unicodedata.normalize("NFKC", name))[-1]
    stem = base[:-4] if base.lower().endswith(".pdf") else base
    stem = re.sub(r"[^\w.-]+", "_", stem, flags=re.ASCII).strip("._-")[:MAX_NAME]
    stem = stem or "upload"
    return f"{stem}-{digest}.pdf" if digest else f"{stem}.pdf"


def content_digest(path: Path, length: int = 8) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def check_upload(path: Path, name: str, max_mb: float) -> None:
    """Raise when the file is too large or not a PDF."""
    size = path.stat().st_size
    if size > max_mb * 1024 * 1024:
        raise IngestError(f"{name} is {size / 1024 / 1024:.1f} MiB; uploads are limited to "
                          f"{max_mb:g} MiB.", "Set ui.max_upload_mb to accept larger files.")
    with path.open("rb") as fh:
        if b"%PDF-" not in fh.read(1024):  # the header may follow a little junk
            raise PdfError(f"{name} is not a PDF file.", "Upload a PDF.")


def save_upload(src: Path, name: str, settings: Settings) -> Path:
    """Copy an uploaded file into the uploads folder (atomically) and return its new path."""
    check_upload(src, name, settings.ui.max_upload_mb)
    folder = uploads_dir(settings).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    dest = (folder / safe_name(name, content_digest(src))).resolve()
    if dest.parent != folder:  # cannot happen with safe_name; kept as the last guard
        raise IngestError(f"Refusing to store the upload {name!r} outside {folder}.")
    with src.open("rb") as inp:
        atomic_write(dest, lambda out: shutil.copyfileobj(inp, out))
    return dest
