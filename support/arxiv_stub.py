"""A real HTTP server on 127.0.0.1 that stands in for arXiv in tests.

It answers the export API (``GET /api/query?id_list=...`` and ``?search_query=...``) with
Atom XML built from the recorded arXiv replies in ``corpus/arxiv-api`` (one entry per corpus
PDF named by an arXiv id, with the title from the corpus README), serves the corpus PDFs at
``/pdf/<id>[vN]`` (with HTTP Range) and every corpus file at ``/files/<name>``, and can be
told to fail (``stub.fail(path, mode)``), to redirect (``stub.redirect``) or to answer a
path with fixed bytes (``stub.respond``, e.g. a recorded reply verbatim). It records every
request it gets.

    with ArxivStub(SHARED / "corpus") as stub:
        settings = make_settings(tmp, ingest=stub.ingest_settings())
        ...
        assert len(stub.api_requests()) == 2

Entries carry each paper's real title, year (from the id), page count (as the comment),
first author and primary category; the abstract is a marked stand-in.
"""

from __future__ import annotations

import copy
import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qs, urlencode, urlsplit

FailMode = Literal["404", "500", "stall", "html", "truncate", "no-range", "no-length"]
FAIL_MODES: tuple[str, ...] = (
    "404", "500", "stall", "html", "truncate", "no-range", "no-length"
)

NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "arxiv": "http://arxiv.org/schemas/atom",
    "opensearch": "http://a9.com/-/spec/opensearch/1.1/",
}
for _prefix, _uri in (("", NS["atom"]), ("arxiv", NS["arxiv"]), ("opensearch", NS["opensearch"])):
    ET.register_namespace(_prefix, _uri)

# First author and primary category of the corpus papers (the README has neither).
_EXTRA: dict[str, tuple[str, str]] = {
    "1409.0473": ("Dzmitry Bahdanau", "cs.CL"),
    "1706.03762": ("Ashish Vaswani", "cs.CL"),
    "1707.06347": ("John Schulman", "cs.LG"),
    "1810.04805": ("Jacob Devlin", "cs.CL"),
    "1907.11692": ("Yinhan Liu", "cs.CL"),
    "1910.13461": ("Mike Lewis", "cs.CL"),
    "2009.01325": ("Nisan Stiennon", "cs.CL"),
    "2009.06732": ("Yi Tay", "cs.LG"),
    "2106.09685": ("Edward J. Hu", "cs.CL"),
    "2203.02155": ("Long Ouyang", "cs.CL"),
    "2204.02311": ("Aakanksha Chowdhery", "cs.CL"),
    "2205.14135": ("Tri Dao", "cs.LG"),
    "2302.13971": ("Hugo Touvron", "cs.CL"),
    "2304.01373": ("Stella Biderman", "cs.CL"),
}
_ID = re.compile(
    r"(?P<id>\d{4}\.\d{4,5}|[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7})(?:v(?P<v>[1-9]\d*))?"
)
_README_ROW = re.compile(
    r"^\|\s*(?P<file>[^|]+?\.pdf)\s*\|\s*(?P<title>[^|]+?)\s*\|\s*(?P<pages>\d+)"
)


@dataclass(frozen=True)
class StubPaper:
    """A corpus PDF as the stub serves it."""

    arxiv_id: str | None  # None for files not named by an arXiv id (gpt1.pdf)
    title: str
    pages: int
    pdf: Path
    author: str = "Unknown Author"
    category: str = "cs.CL"

    @property
    def year(self) -> int | None:
        return 2000 + int(self.arxiv_id[:2]) if self.arxiv_id else None

    @property
    def published(self) -> str:
        assert self.arxiv_id is not None
        return f"20{self.arxiv_id[:2]}-{self.arxiv_id[2:4]}-01T00:00:00Z"


@dataclass(frozen=True)
class StubRequest:
    """One request the stub received (``at`` is ``time.monotonic()`` on arrival)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    at: float

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def ids(self) -> list[str]:
        """The ids of an ``id_list`` API request."""
        raw = self.param("id_list") or ""
        return [i for i in raw.split(",") if i]


def corpus_papers(corpus_dir: Path) -> list[StubPaper]:
    """The corpus PDFs listed in the corpus README table, in its order."""
    papers = []
    for line in (corpus_dir / "README.md").read_text(encoding="utf-8").splitlines():
        row = _README_ROW.match(line)
        if not row or not (corpus_dir / "pdfs" / row["file"]).is_file():
            continue
        stem = row["file"][: -len(".pdf")]
        arxiv_id = stem if _ID.fullmatch(stem) else None
        author, category = _EXTRA.get(stem, ("Unknown Author", "cs.CL"))
        papers.append(StubPaper(arxiv_id, row["title"], int(row["pages"]),
                                corpus_dir / "pdfs" / row["file"], author, category))
    return papers


@dataclass
class _Rule:
    mode: str
    remaining: int | None  # None: every matching request


@dataclass
class _State:
    rules: dict[str, _Rule] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    requests: list[StubRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ArxivStub:
    """The stand-in server. Use as a context manager (or ``start()``/``stop()``)."""

    def __init__(self, corpus_dir: Path, *, port: int = 0, error_status: int = 400,
                 stall_s: float = 30.0) -> None:
        self.corpus_dir = Path(corpus_dir)
        self.papers = corpus_papers(self.corpus_dir)
        self.by_id = {p.arxiv_id: p for p in self.papers if p.arxiv_id}
        self.error_status = error_status  # arXiv answers a malformed id with HTTP 400
        self.stall_s = stall_s  # a stalled request is dropped after this (or at stop)
        self._port = port
        self._state = _State()
        self._release = threading.Event()
        api = self.corpus_dir / "arxiv-api"
        self._feed_template = ET.parse(api / "arxiv_api_example.xml").getroot()
        self._error_template = ET.parse(api / "arxiv_api_error_example.xml").getroot()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> ArxivStub:
        server = ThreadingHTTPServer(("127.0.0.1", self._port), _Handler)
        server.daemon_threads = True
        server.stub = self  # type: ignore[attr-defined]
        self._server = server
        self._release.clear()
        self._thread = threading.Thread(target=server.serve_forever, name="arxiv-stub",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ArxivStub:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stub is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/query"

    @property
    def pdf_base_url(self) -> str:
        return f"{self.base_url}/pdf"

    def pdf_url(self, arxiv_id: str, version: int = 1) -> str:
        return f"{self.pdf_base_url}/{arxiv_id}v{version}"

    def file_url(self, name: str) -> str:
        """URL of any corpus file by name (``gpt1.pdf``): a plain, non-arXiv PDF URL."""
        return f"{self.base_url}/files/{name}"

    def ingest_settings(self) -> dict[str, object]:
        """The ``ingest`` settings that point a client at this stub."""
        return {"arxiv_api_url": self.api_url, "arxiv_pdf_url": self.pdf_base_url}

    # -- failures and redirects --------------------------------------------------------------
    def fail(self, path: str, mode: FailMode, times: int | None = None) -> None:
        """Make requests to ``path`` fail (``times`` of them, or all).

        ``path`` is matched exactly, or as a prefix when it ends with ``*``. Modes: ``404``,
        ``500``, ``stall`` (accept, never answer), ``html`` (a web page with status 200),
        ``truncate`` (declare the full length, send half, close), ``no-range`` (ignore Range),
        ``no-length`` (ignore Range, send no Content-Length, end the body by closing).
        """
        if mode not in FAIL_MODES:
            raise ValueError(f"unknown failure mode {mode!r}; one of {FAIL_MODES}")
        with self._state.lock:
            self._state.rules[path] = _Rule(mode, times)

    def redirect(self, path: str, to: str) -> None:
        """Answer ``path`` with a 302 to ``to`` (a path on this server or a URL)."""
        with self._state.lock:
            self._state.redirects[path] = to

    def respond(self, path: str, body: bytes, status: int = 200,
                content_type: str = "application/atom+xml; charset=utf-8") -> None:
        """Answer ``path`` with a fixed reply, e.g. a recorded arXiv reply verbatim."""
        with self._state.lock:
            self._state.fixed[path] = (status, body, content_type)

    def clear(self) -> None:
        """Forget failures, redirects and fixed replies (the request log stays)."""
        with self._state.lock:
            self._state.rules.clear()
            self._state.redirects.clear()
            self._state.fixed.clear()

    def _take_rule(self, path: str) -> str | None:
        with self._state.lock:
            for key, rule in self._state.rules.items():
                hit = path == key or (key.endswith("*") and path.startswith(key[:-1]))
                if not hit or rule.remaining == 0:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule.mode
        return None

    # -- request log -------------------------------------------------------------------------
    @property
    def requests(self) -> list[StubRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def api_requests(self) -> list[StubRequest]:
        return [r for r in self.requests if r.path == "/api/query"]

    def requests_to(self, path: str) -> list[StubRequest]:
        return [r for r in self.requests if r.path == path]

    def _record(self, request: StubRequest) -> None:
        with self._state.lock:
            self._state.requests.append(request)

    # -- Atom replies ------------------------------------------------------------------------
    def feed(self, entries: list[ET.Element], total: int, query: dict[str, str]) -> bytes:
        """A feed shaped like the recorded reply, holding ``entries``."""
        root = copy.deepcopy(self._feed_template)
        for old in root.findall("atom:entry", NS):
            root.remove(old)
        shown = "&".join(f"{k}={v}" for k, v in query.items())
        _set(root, "atom:title", f"arXiv Query: {shown}")
        link = root.find("atom:link", NS)
        if link is not None:
            link.set("href", f"{self.api_url}?{urlencode(query)}")
        _set(root, "opensearch:itemsPerPage", query.get("max_results", "100"))
        _set(root, "opensearch:totalResults", str(total))
        _set(root, "opensearch:startIndex", query.get("start", "0"))
        root.extend(entries)
        ET.indent(root, space="  ")
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)

    def entry(self, paper: StubPaper, version: int = 1) -> ET.Element:
        """The recorded entry, rewritten to describe ``paper`` with links to this server."""
        entry = copy.deepcopy(_first(self._feed_template, "atom:entry"))
        vid = f"{paper.arxiv_id}v{version}"
        _set(entry, "atom:id", f"http://arxiv.org/abs/{vid}")
        _set(entry, "atom:title", paper.title)
        _set(entry, "atom:updated", paper.published)
        _set(entry, "atom:published", paper.published)
        _set(entry, "atom:summary", f"{paper.title}. (Stand-in abstract served by the local "
                                    "arXiv stub; the real abstract is in the PDF.)")
        _set(entry, "arxiv:comment", f"{paper.pages} pages")
        for link in entry.findall("atom:link", NS):
            is_pdf = link.get("title") == "pdf"
            link.set("href", self.pdf_url(str(paper.arxiv_id), version) if is_pdf
                     else f"https://arxiv.org/abs/{vid}")
        categories = entry.findall("atom:category", NS)
        for cat in categories[1:]:
            entry.remove(cat)
        categories[0].set("term", paper.category)
        _first(entry, "arxiv:primary_category").set("term", paper.category)
        for author in entry.findall("atom:author", NS):
            entry.remove(author)
        author = ET.SubElement(entry, f"{{{NS['atom']}}}author")
        ET.SubElement(author, f"{{{NS['atom']}}}name").text = paper.author
        return entry

    def error_reply(self, bad_id: str) -> bytes:
        """The recorded "incorrect id format" error feed, naming ``bad_id``."""
        root = copy.deepcopy(self._error_template)
        entry = _first(root, "atom:entry")
        anchor = f"https://arxiv.org/api/errors#incorrect_id_format_for_{bad_id}"
        _set(entry, "atom:id", anchor)
        _first(entry, "atom:link").set("href", anchor)
        _set(entry, "atom:summary", f"incorrect id format for {bad_id}")
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)

    def answer_query(self, query: dict[str, str]) -> tuple[int, bytes]:
        """(status, Atom body) for an API query, as arXiv would answer it."""
        start = int(query.get("start", "0") or 0)
        max_results = int(query.get("max_results", "10") or 10)
        ids = [i for i in query.get("id_list", "").split(",") if i]
        if ids:
            found: list[tuple[StubPaper, int]] = []
            for raw in ids:
                match = _ID.fullmatch(raw)
                if not match:
                    return self.error_status, self.error_reply(raw)
                paper = self.by_id.get(match["id"])
                if paper is not None:
                    found.append((paper, int(match["v"] or 1)))
        else:
            found = [(p, 1) for p in self.search(query.get("search_query", ""))]
        page = found[start:start + max_results]
        return 200, self.feed([self.entry(p, v) for p, v in page], len(found), query)

    def search(self, search_query: str) -> list[StubPaper]:
        """Papers whose title, author or category holds every word of the query."""
        text = re.sub(r"\b(?:all|ti|abs|au|cat|co|jr|rn|id):", " ", search_query)
        text = re.sub(r"\b(?:AND|OR|ANDNOT)\b|[\"()+]", " ", text)
        words = text.lower().split()
        hits = []
        for paper in self.by_id.values():
            hay = f"{paper.title} {paper.author} {paper.category}".lower()
            if all(w in hay for w in words):
                hits.append(paper)
        return hits


def _first(elem: ET.Element, path: str) -> ET.Element:
    found = elem.find(path, NS)
    if found is None:
        raise ValueError(f"the recorded arXiv reply has no {path}")
    return found


def _set(elem: ET.Element, path: str, text: str) -> None:
    _first(elem, path).text = text


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "arxiv-stub/1"

    @property
    def stub(self) -> ArxivStub:
        return self.server.stub  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.stub._record(StubRequest("GET", parts.path, query, headers, time.monotonic()))
        redirect = self.stub._state.redirects.get(parts.path)
        if redirect is not None:
            self._send(HTTPStatus.FOUND, b"", "text/plain", {"Location": redirect})
            return
        mode = self.stub._take_rule(parts.path)
        fixed = self.stub._state.fixed.get(parts.path)
        if mode == "stall":
            self.stub._release.wait(self.stub.stall_s)
            self.close_connection = True
            return
        if mode in ("404", "500"):
            self._send(int(mode), f"{mode} (stub failure)".encode(), "text/plain")
        elif mode == "html":
            page = b"<!DOCTYPE html><html><body><h1>Sign in</h1></body></html>"
            self._send(200, page, "text/html; charset=utf-8")
        elif fixed is not None:
            self._send(fixed[0], fixed[1], fixed[2])
        elif parts.path == "/api/query":
            status, body = self.stub.answer_query({k: v[0] for k, v in query.items()})
            self._send(status, body, "application/atom+xml; charset=utf-8")
        else:
            self._serve_file(parts.path, mode)

    def _lookup(self, path: str) -> Path | None:
        if path.startswith("/files/"):
            candidate = self.stub.corpus_dir / "pdfs" / path[len("/files/"):]
            ok = candidate.parent == self.stub.corpus_dir / "pdfs" and candidate.is_file()
            return candidate if ok else None
        match = _ID.fullmatch(path.removeprefix("/pdf/").removesuffix(".pdf"))
        paper = self.stub.by_id.get(match["id"]) if match else None
        return paper.pdf if paper else None

    def _serve_file(self, path: str, mode: str | None) -> None:
        pdf = self._lookup(path)
        if pdf is None:
            self._send(404, b"Not Found", "text/plain")
            return
        data = pdf.read_bytes()
        size = len(data)
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if ranged and mode not in ("no-range", "no-length"):
            first = int(ranged[1])
            last = min(int(ranged[2]) if ranged[2] else size - 1, size - 1)
            if first >= size:
                self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"})
                return
            extra = {"Content-Range": f"bytes {first}-{last}/{size}"}
            self._send(206, data[first:last + 1], "application/pdf", extra, mode == "truncate")
            return
        self._send(200, data, "application/pdf", {}, mode == "truncate", mode == "no-length")

    def _send(self, status: int, body: bytes, content_type: str,
              extra: dict[str, str] | None = None, truncate: bool = False,
              no_length: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if no_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if truncate:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if truncate else body)
        self.wfile.flush()
