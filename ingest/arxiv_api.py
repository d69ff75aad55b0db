"""arXiv metadata through the export API, politely: one request per interval, retries with
exponential backoff, a timeout, a User-Agent, and a fast offline mode.

The ``arxiv`` package builds the query URLs, pages through results and parses the Atom
replies; the requests themselves go through one ``httpx.Client`` here, because the package
has no timeout, no User-Agent setting and no injectable clock. The package drops arXiv's
error entry (it has no ``<published>``), so that entry is looked for here.

When arXiv cannot be reached, the first failure marks the client unreachable
(``client.reachable`` becomes False) and every later call raises :class:`NetworkError` at
once, so an offline ingest falls back to metadata from the PDFs without waiting again.
"""

from __future__ import annotations

import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Any

import arxiv
import httpx
from arxiv._feed import ParsedFeed
from arxiv._feed import parse as parse_feed

from core.errors import NetworkError, SourceNotFoundError
from core.retry import attempts
from core.settings import IngestSettings
from core.types import PaperMeta
from ingest.fetch import describe_error
from ingest.sources import parse_arxiv_id

_ATOM = "{http://www.w3.org/2005/Atom}"
_SEARCH_PAGE = 100  # results per request when searching


class _PackageClient(arxiv.Client):
    """``arxiv.Client`` aimed at a configurable endpoint, fetching through ``ArxivClient``."""

    def __init__(self, owner: ArxivClient, api_url: str) -> None:
        super().__init__(page_size=_SEARCH_PAGE, delay_seconds=0.0, num_retries=0)
        self.query_url_format = api_url + "?{}"
        self._owner = owner

    def _parse_feed(self, url: str, first_page: bool = True, _try_index: int = 0) -> ParsedFeed:
        return self._owner._fetch_feed(url)


class ArxivClient:
    """Metadata and search over the arXiv API. Create one per process and pass it down."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._clock = clock
        self._owns_http = http is None
        self._http = http or httpx.Client(follow_redirects=True)
        self._package = _PackageClient(self, settings.arxiv_api_url)
        self._lock = threading.Lock()
        self._last_request: float | None = None
        self._unreachable: str | None = None  # why arXiv was given up on

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def reachable(self) -> bool:
        """False once a request could not reach arXiv; later calls then fail at once."""
        return self._unreachable is None

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ArxivClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- public API --------------------------------------------------------------------------
    def fetch_metadata(self, ids: Iterable[str]) -> dict[str, PaperMeta]:
        """Metadata of ``ids`` (with or without version), keyed by the id as given.

        Asks for ``settings.batch_ids`` ids per request. Ids arXiv does not know are absent
        from the result; an id arXiv rejects raises :class:`SourceNotFoundError`.
        """
        wanted = list(dict.fromkeys(i.strip() for i in ids if i.strip()))
        size = max(1, self.settings.batch_ids)
        found: dict[str, PaperMeta] = {}
        for start in range(0, len(wanted), size):
            batch = wanted[start:start + size]
            query = [_query_id(i) for i in batch]
            search = arxiv.Search(id_list=query, max_results=len(query))
            metas = self._run(search, page_size=len(query))
            for given, asked in zip(batch, query, strict=True):
                meta = _match(asked, metas)
                if meta is not None:
                    found[given] = meta
        return found

    def search(self, query: str, max_results: int) -> list[PaperMeta]:
        """Papers matching an arXiv search query (``all:lora``, ``ti:"attention"``...)."""
        if not query.strip() or max_results <= 0:
            return []
        search = arxiv.Search(query=query.strip(), max_results=max_results)
        return self._run(search, page_size=min(max_results, _SEARCH_PAGE))

    def pdf_url(self, arxiv_id: str, version: int | None = None) -> str:
        """``<settings.arxiv_pdf_url>/<id>[vN]``."""
        suffix = f"v{version}" if version else ""
        return f"{self.settings.arxiv_pdf_url.rstrip('/')}/{arxiv_id}{suffix}"

    # -- internals ---------------------------------------------------------------------------
    def _run(self, search: Any, page_size: int) -> list[PaperMeta]:
        with self._lock:
            self._package.page_size = page_size
            return [self._to_meta(result) for result in self._package.results(search)]

    def _fetch_feed(self, url: str) -> ParsedFeed:
        """One page of results (called by the package for each page)."""
        response = self._get(url)
        _raise_error_entry(response.content)
        if response.status_code != 200:
            raise NetworkError(
                f"arXiv answered HTTP {response.status_code} to {url}.",
                "Check ingest.arxiv_api_url, or try again later.",
            )
        feed = parse_feed(response.content)
        if feed.malformed:
            raise NetworkError(f"arXiv sent a reply that is not Atom XML ({feed.error}).",
                               "Check ingest.arxiv_api_url.")
        return feed

    def _get(self, url: str) -> httpx.Response:
        """GET with the rate limit, retries and backoff; 2xx/4xx replies are returned."""
        headers = {"User-Agent": self.settings.user_agent}
        last = ""
        for _ in attempts(self.settings.retries, self.settings.backoff_s, self._sleep):
            if self._unreachable is not None:
                raise self._offline_error()
            self._wait_turn()
            try:
                response = self._http.get(url, headers=headers, timeout=self.settings.timeout_s)
            except (httpx.ConnectError, httpx.ConnectTimeout) as err:
                self._unreachable = describe_error(err)  # no connection at all: offline
                raise self._offline_error() from err
            except httpx.TransportError as err:  # read timeouts, dropped connections
                last = describe_error(err)
                continue
            finally:
                self._last_request = self._clock()
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code}"
                continue
            return response
        self._unreachable = last
        raise self._offline_error()

    def _wait_turn(self) -> None:
        if self._last_request is None:
            return
        wait = self.settings.request_interval_s - (self._clock() - self._last_request)
        if wait > 0:
            self._sleep(wait)

    def _offline_error(self) -> NetworkError:
        return NetworkError(
            f"arXiv cannot be reached ({self._unreachable}); metadata will come from the PDFs.",
            "Check the network or ingest.arxiv_api_url.",
        )

    def _to_meta(self, result: Any) -> PaperMeta:
        short = result.get_short_id()
        parsed = parse_arxiv_id(short)
        arxiv_id, version = parsed if parsed else (short, None)
        published: datetime = result.published
        return PaperMeta(
            id=arxiv_id,
            title=_collapse(result.title),
            authors=tuple(author.name for author in result.authors),
            year=published.year if published != datetime.min else None,
            abstract=_collapse(result.summary),
            categories=tuple(result.categories),
            version=version,
            arxiv_id=arxiv_id,
            pdf_url=result.pdf_url or self.pdf_url(arxiv_id, version),
            metadata_from="arxiv",
        )


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _query_id(given: str) -> str:
    """The id as the API wants it (``arXiv:1706.03762`` -> ``1706.03762``); unparsed ids
    are sent as given, for arXiv to reject by name."""
    parsed = parse_arxiv_id(given)
    if parsed is None:
        return given
    arxiv_id, version = parsed
    return f"{arxiv_id}v{version}" if version else arxiv_id


def _match(asked: str, metas: list[PaperMeta]) -> PaperMeta | None:
    parsed = parse_arxiv_id(asked)
    if parsed is None:
        return None
    return next((meta for meta in metas if meta.id == parsed[0]), None)


def _raise_error_entry(content: bytes) -> None:
    """Raise :class:`SourceNotFoundError` for arXiv's error feed (an entry titled "Error")."""
    if b"Error" not in content:
        return
    try:
        root = ET.fromstring(content)
    except ET.ParseError:
        return  # not Atom at all: the caller reports it
    for entry in root.iter(f"{_ATOM}entry"):
        if (entry.findtext(f"{_ATOM}title") or "").strip() != "Error":
            continue
        summary = _collapse(entry.findtext(f"{_ATOM}summary") or "unknown error")
        named = re.search(r"\bfor (\S+)$", summary)
        bad = named.group(1) if named else (entry.findtext(f"{_ATOM}id") or "").split("_")[-1]
        raise SourceNotFoundError(
            f"arXiv rejected the id {bad!r}: {summary}.",
            "Check the arXiv id (like 1706.03762 or hep-th/9901001).",
        )
