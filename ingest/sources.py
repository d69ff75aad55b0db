"""What the user typed -> typed sources: arXiv ids, arXiv URLs, local PDFs and other PDF URLs.

``parse_item("2106.09685v2")``, ``parse_item("https://arxiv.org/abs/hep-th/9901001")``,
``parse_item("papers/")`` (every ``*.pdf`` in it, sorted) and ``parse_item("x.pdf")`` each
give a list of :class:`Source`. Nothing here touches the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import SourceNotFoundError
from core.types import SourceKind

# New style (since April 2007): YYMM.NNNN (to 2014) or YYMM.NNNNN (from 2015), optional vN.
_MONTH = r"(?:0[1-9]|1[0-2])"
_NEW_ID = rf"(?P<new>(?:0[7-9]|1[0-4]){_MONTH}\.\d{{4}}|(?:1[5-9]|[2-9]\d){_MONTH}\.\d{{5}})"
# Old style: archive(.SUBJECT-CLASS)/YYMMNNN, e.g. hep-th/9901001, math.GT/0309136.
_OLD_ID = r"(?P<old>[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{2}(?:0[1-9]|1[0-2])\d{3})"
_VERSION = r"(?:v(?P<version>[1-9]\d*))?"
_ID_RE = re.compile(rf"(?:arxiv:)?(?:{_NEW_ID}|{_OLD_ID}){_VERSION}", re.IGNORECASE)
_ARXIV_HOSTS = {"arxiv.org", "www.arxiv.org", "export.arxiv.org"}
_URL_PATH_RE = re.compile(r"/(?:abs|pdf)/(?P<id>.+?)(?:\.pdf)?/?")
# File names cannot hold "/": old-style ids appear as hep-th9901001 or hep-th_9901001.
_FILE_RE = re.compile(
    rf"(?:arxiv[-_.:]?)?(?:{_NEW_ID}|(?P<arch>[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{{2}})?)[_]?"
    rf"(?P<num>\d{{2}}(?:0[1-9]|1[0-2])\d{{3}})){_VERSION}",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Source:
    """One thing to ingest.

    ``kind="arxiv"``: ``arxiv_id`` (without version) and ``version`` (None = latest) are set.
    ``kind="file"``: ``path`` is set; ``arxiv_id``/``version`` too when the file is named by
    an arXiv id (``1706.03762v7.pdf``).  ``kind="url"``: ``url`` is set (a PDF URL).
    """

    kind: SourceKind
    raw: str  # what the user typed
    arxiv_id: str | None = None  # without version
    version: int | None = None
    path: Path | None = None
    url: str | None = None


def _split(match: re.Match[str]) -> tuple[str, int | None]:
    arxiv_id = match.group("new") or match.group("old")
    if match.group("old"):  # the archive is lower case, the subject class upper case
        archive, _, number = arxiv_id.partition("/")
        name, dot, subject = archive.partition(".")
        arxiv_id = f"{name.lower()}{dot}{subject.upper()}/{number}"
    version = match.group("version")
    return arxiv_id, int(version) if version else None


def parse_arxiv_id(text: str) -> tuple[str, int | None] | None:
    """``(id without version, version or None)`` for an arXiv id or arXiv abs/pdf URL.

    Accepts ``2106.09685``, ``2106.09685v2``, ``arXiv:2106.09685``, ``hep-th/9901001v1``,
    ``https://arxiv.org/abs/2106.09685v2``, ``https://arxiv.org/pdf/2106.09685.pdf``.
    Returns None for anything else.
    """
    text = text.strip()
    match = _ID_RE.fullmatch(text)
    if match:
        return _split(match)
    url = text if "://" in text else f"https://{text}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in _ARXIV_HOSTS:
        return None
    path_match = _URL_PATH_RE.fullmatch(parts.path)
    if not path_match:
        return None
    match = _ID_RE.fullmatch(path_match.group("id"))
    return _split(match) if match else None


def arxiv_id_from_filename(path: Path | str) -> tuple[str, int | None] | None:
    """The arXiv id a file is named by: ``1706.03762.pdf``, ``1706.03762v7.pdf``,
    ``hep-th9901001.pdf`` -> ``("hep-th/9901001", None)``; None when the name is no id."""
    stem = Path(path).name
    if stem.lower().endswith(".pdf"):
        stem = stem[: -len(".pdf")]
    match = _FILE_RE.fullmatch(stem)
    if not match:
        return None
    version = int(match.group("version")) if match.group("version") else None
    if match.group("new"):
        return match.group("new"), version
    name, dot, subject = match.group("arch").partition(".")
    return f"{name.lower()}{dot}{subject.upper()}/{match.group('num')}", version


def _file_source(raw: str, path: Path) -> Source:
    found = arxiv_id_from_filename(path)
    arxiv_id, version = found if found else (None, None)
    return Source(kind="file", raw=raw, arxiv_id=arxiv_id, version=version, path=path)


def _looks_like_path(item: str) -> bool:
    return (
        "/" in item or "\\" in item or item.startswith(("~", "."))
        or item.lower().endswith(".pdf")
    )


def parse_item(item: str) -> list[Source]:
    """Turn one command-line item into sources (a directory gives one per PDF in it).

    Raises :class:`SourceNotFoundError` for a path that does not exist, a directory without
    PDFs, or text that is neither a path, an arXiv id nor an http(s) URL.
    """
    raw = item
    item = item.strip()
    if item.lower().startswith(("http://", "https://")):
        found = parse_arxiv_id(item)
        if found:
            return [Source(kind="arxiv", raw=raw, arxiv_id=found[0], version=found[1])]
        return [Source(kind="url", raw=raw, url=item)]
    path = Path(item).expanduser()
    if item and path.is_dir():
        pdfs = sorted(p for p in path.iterdir() if p.suffix.lower() == ".pdf" and p.is_file())
        if not pdfs:
            raise SourceNotFoundError(
                f"The folder {path} holds no PDF files.", "Give a folder with *.pdf files in it."
            )
        return [_file_source(raw, p.resolve()) for p in pdfs]
    if item and path.exists():
        return [_file_source(raw, path.resolve())]
    found = parse_arxiv_id(item)
    if found:
        return [Source(kind="arxiv", raw=raw, arxiv_id=found[0], version=found[1])]
    if _looks_like_path(item):
        raise SourceNotFoundError(f"The file {path} does not exist; check the path.")
    raise SourceNotFoundError(
        f"{item!r} is not a file, an arXiv id or a URL.",
        "Give a PDF path, a folder, an arXiv id such as 1706.03762, or an http(s) URL.",
    )
