"""Download PDFs into a cache folder: checked, resumable, written atomically.

``Downloader.fetch(url, name)`` returns ``cache_dir / name``. A file already there is
returned without touching the network, so a name must stand for one URL: a PDF URL's
cache name is :func:`url_file_name` (its stem plus a hash of the whole URL, so that
``.../pdf?id=A`` and ``.../pdf?id=B`` are two files). A download goes to ``name.part`` and
is renamed when complete; an interrupted ``.part`` is resumed with an HTTP Range request (or started
over when the server ignores Range). The first bytes must be ``%PDF-``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from core.errors import (
    DiskFullError,
    IngestError,
    NetworkError,
    PdfError,
    SourceNotFoundError,
)
from core.fsio import replace_durably
from core.retry import attempts
from core.settings import IngestSettings

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)
_CHUNK = 64 * 1024
_MAGIC = b"%PDF-"


class _Retry(Exception):
    """A failure worth another try (timeout, dropped connection, 5xx, short body)."""


class Downloader:
    """Fetches PDFs over HTTP(S) into ``cache_dir``. Create once, reuse for every PDF."""

    def __init__(
        self,
        settings: IngestSettings,
        cache_dir: Path,
        http: httpx.Client | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.cache_dir = Path(cache_dir)
        self._owns_http = http is None
        self._http = http or httpx.Client(follow_redirects=True)
        self._sleep = sleep
        self._max_bytes = int(settings.max_pdf_mb * 1024 * 1024)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def fetch(self, url: str, name: str, progress: Progress | None = None) -> Path:
        """The PDF at ``url`` as ``cache_dir/name`` (downloaded unless already cached).

        Raises SourceNotFoundError (404/410), PdfError (not a PDF, too large),
        NetworkError (unreachable, timeouts, incomplete after retries; the ``.part`` file is
        kept for the next try to resume) or DiskFullError.
        """
        target = self.cache_dir / _safe_name(name)
        if target.is_file() and target.stat().st_size > 0:
            return target
        part = target.with_name(target.name + ".part")
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _write_error(self.cache_dir, err) from err
        last = ""
        for _ in attempts(self.settings.retries, self.settings.backoff_s, self._sleep):
            try:
                self._download(url, part, progress)
            except _Retry as err:
                last = str(err)
                continue
            except (SourceNotFoundError, PdfError):
                part.unlink(missing_ok=True)
                raise
            replace_durably(part, target)
            return target
        raise NetworkError(
            f"Could not download {url} ({last}).",
            "Check the network and run the command again; a partial download is resumed.",
        )

    def _download(self, url: str, part: Path, progress: Progress | None) -> None:
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": self.settings.user_agent}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with self._http.stream("GET", url, headers=headers, follow_redirects=True,
                                   timeout=self.settings.timeout_s) as response:
                start, total = self._check(url, response, part, offset)
                if start is None:
                    return  # the .part already holds the whole file
                self._write(url, response, part, start, total, progress)
        except httpx.TransportError as err:  # timeouts, refused or dropped connections
            raise _Retry(describe_error(err)) from err

    def _check(self, url: str, response: httpx.Response, part: Path,
               offset: int) -> tuple[int | None, int | None]:
        """Where to write from and the full size, after checking status, type and size."""
        status = response.status_code
        if status in (404, 410):
            raise SourceNotFoundError(f"{url} was not found (HTTP {status}).",
                                      "Check the URL or the arXiv id.")
        if status == 416 and offset:
            size = _content_range_size(response)
            if size == offset and _starts_pdf(part):
                return None, size
            part.unlink(missing_ok=True)
            raise _Retry("the server refused to resume; starting over")
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}")
        if status not in (200, 206):
            raise NetworkError(f"{url} answered HTTP {status}.", "Check the URL.")
        start = 0
        if status == 206:
            first = _content_range_start(response)
            if first != offset:
                part.unlink(missing_ok=True)
                raise _Retry(f"the server resumed at byte {first}, not {offset}")
            start = offset
        length = response.headers.get("content-length")
        total = start + int(length) if length and length.isdigit() else None
        if status == 206:
            total = _content_range_size(response) or total
        if total is not None and total > self._max_bytes:
            raise self._too_large(url, total)
        return start, total

    def _write(self, url: str, response: httpx.Response, part: Path, start: int,
               total: int | None, progress: Progress | None) -> None:
        done = start
        head: bytes | None = b"" if start == 0 else None  # None once the magic is checked
        try:
            with part.open("ab" if start else "wb") as fh:
                for chunk in response.iter_bytes(_CHUNK):
                    if head is not None:
                        head += chunk
                        if len(head) < len(_MAGIC):
                            continue
                        _check_magic(url, head)
                        chunk, head = head, None
                    done += len(chunk)
                    if done > self._max_bytes:
                        raise self._too_large(url, done)
                    fh.write(chunk)
                    if progress is not None:
                        progress(done, total)
                if head is not None:
                    _check_magic(url, head)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            if err.errno == errno.ENOSPC:
                part.unlink(missing_ok=True)
                raise DiskFullError(str(part.parent)) from err
            raise _write_error(part, err) from err
        if total is not None and done < total:
            raise _Retry(f"incomplete: got {done} of {total} bytes")

    def _too_large(self, url: str, size: int) -> PdfError:
        return PdfError(
            f"{url} is larger than {self.settings.max_pdf_mb:g} MiB "
            f"({size / 1024 / 1024:.1f} MiB or more).",
            "Raise ingest.max_pdf_mb to accept it.",
        )


def url_hash(url: str, length: int = 16) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:length]


def _url_stem(url: str) -> str:
    stem = PurePosixPath(urlsplit(url).path).stem
    return re.sub(r"[^\w.-]+", "_", stem, flags=re.ASCII).strip("._-")[:80]


def url_file_name(url: str) -> str:
    """The cache file of a PDF URL: its stem and a hash of the whole URL (query included)."""
    return f"{_url_stem(url) or 'paper'}-{url_hash(url)}.pdf"


def url_paper_id(url: str) -> str:
    """The paper id of a PDF URL not known to the reading list: the URL's stem; with a
    hash of the whole URL when a query or fragment tells papers apart (``pdf?id=A``)."""
    parts = urlsplit(url)
    stem = _url_stem(url)
    if stem and not parts.query and not parts.fragment:
        return stem
    return f"{stem or 'paper'}-{url_hash(url, 8)}"


def _safe_name(name: str) -> str:
    safe = name.replace("/", "_").replace("\\", "_").strip()
    if safe in ("", ".", ".."):
        raise ValueError(f"not a usable file name: {name!r}")
    return safe


def _check_magic(url: str, head: bytes) -> None:
    if head.startswith(_MAGIC):
        return
    if head.lstrip()[:1] == b"<":
        raise PdfError(f"{url} returned a web page, not a PDF.",
                       "Check the URL: it must point at the PDF file itself.")
    raise PdfError(f"{url} did not return a PDF (it starts with {head[:16]!r}).",
                   "Check the URL: it must point at a PDF file.")


def _starts_pdf(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(_MAGIC)) == _MAGIC


def _content_range_start(response: httpx.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("content-range", ""))
    return int(match.group(1)) if match else None


def _content_range_size(response: httpx.Response) -> int | None:
    match = re.search(r"/(\d+)$", response.headers.get("content-range", ""))
    return int(match.group(1)) if match else None


def describe_error(err: Exception) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    detail = str(err).strip() or type(err).__name__
    return detail.splitlines()[0]


def _write_error(path: Path, err: OSError) -> IngestError:
    return IngestError(f"Cannot write {path}: {err.strerror or err}.",
                       "Check the permissions of the data directory.")
