"""`paperchat ingest`: sources -> fetched PDFs -> pages -> chunks -> vectors -> library.

Downloads run in threads and text extraction in worker processes while the main thread
embeds the papers already extracted, so the stages overlap. Each paper is stored in one
SQLite transaction: a crash loses at most the paper in flight.

Hostile input fails one item, never the run: each PDF is read in its own process with a
time and memory limit (:mod:`ingest.workers`), local files have the same size cap as
downloads, and a PDF claiming more than ``ingest.max_pages`` pages is refused. Browser
uploads (``upload=True``) are not trusted by name: their identity is the arXiv stamp on
their first page or a name with their content's hash, and they never replace a paper.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.errors import (
    DiskFullError,
    IngestError,
    LibraryBusyError,
    NetworkError,
    PaperchatError,
    PdfError,
    SourceNotFoundError,
)
from core.settings import Settings
from core.types import Chunk, Page, Paper, PaperMeta
from index.embedder import Embedder, load_tokenizer
from index.library import Catalog, Library, embed_text
from ingest import extract, metadata, reading_list
from ingest.arxiv_api import ArxivClient
from ingest.chunk import Chunker
from ingest.fetch import Downloader, url_file_name, url_paper_id
from ingest.sources import Source, parse_item
from ingest.workers import ExtractionPool

log = logging.getLogger(__name__)


class Reporter(Protocol):
    def stage(self, name: str, total: int) -> None: ...
    def advance(self, name: str, label: str = "") -> None: ...


class NullReporter:
    def stage(self, name: str, total: int) -> None:
        pass

    def advance(self, name: str, label: str = "") -> None:
        pass


@dataclass
class ItemResult:
    item: str
    status: str  # ingested | replaced | unchanged | failed
    paper_id: str = ""
    title: str = ""
    pages: int = 0
    chunks: int = 0
    reason: str = ""


@dataclass
class IngestReport:
    results: list[ItemResult] = field(default_factory=list)
    arxiv_unreachable: bool = False
    seconds: float = 0.0

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.results if r.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {"results": [vars(r) for r in self.results],
                "arxiv_unreachable": self.arxiv_unreachable,
                "seconds": round(self.seconds, 2),
                "counts": {s: sum(r.status == s for r in self.results)
                           for s in ("ingested", "replaced", "unchanged", "failed")}}


@dataclass
class Job:
    item: str
    source: Source
    paper_id: str
    meta: PaperMeta | None = None
    path: Path | None = None
    content_hash: str = ""
    flags: tuple[str, ...] = ()  # warnings found at extraction (Paper.flags)


def _local_id(source: Source) -> tuple[str, str | None]:
    """(paper id, arXiv id) of a local file or URL before its text is read."""
    if source.arxiv_id:
        return source.arxiv_id, source.arxiv_id
    known = reading_list.by_url().get(source.url or "")
    if known is not None:
        return known.id, known.arxiv_id
    if source.path:
        return source.path.stem or "paper", None
    return url_paper_id(source.url or ""), None


def make_chunker(settings: Settings) -> Chunker:
    """The chunker of the settings: token counts in the embedding model's own tokenizer."""
    return Chunker(load_tokenizer(settings.embedding.model), settings.chunking.chunk_tokens,
                   settings.chunking.overlap_tokens)


@contextmanager
def writer_lock(library: Catalog, wait: bool = True,
                on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """The library's writer lock. When another process holds it: LibraryBusyError unless
    ``wait``; else ``on_wait`` is told once (the CLI prints it) and the lock is waited for."""
    with ExitStack() as stack:
        try:
            stack.enter_context(library.writer(wait=False))
        except LibraryBusyError:
            if not wait:
                raise
            if on_wait is not None:
                on_wait(f"Another paperchat process is writing to {library.dir}; waiting "
                        "for it to finish (Ctrl-C stops).")
            stack.enter_context(library.writer(wait=True))
        yield


# -- the stages: the local runner (Ingestor) and the Ray runner (ingest.ray_runner) both
# -- call these, so both store the same papers, chunks and vectors.
# Extraction (CPU) is ingest.extract.extract_document, in a worker process of either runner.
MetaLookup = Callable[[str], PaperMeta | None]  # arXiv id -> metadata (None: not found)


@dataclass
class Prepared:
    """A paper ready to embed and store: its record, pages, chunks and the chunk texts the
    embedder sees."""

    job: Job
    paper: Paper
    pages: list[Page]
    chunks: list[Chunk]
    texts: list[str]


def check_size(path: Path, limit_mb: float) -> None:
    """A local PDF gets the cap a download gets (ingest.max_pdf_mb)."""
    size = path.stat().st_size if path.is_file() else 0
    if size > limit_mb * 1024 * 1024:
        raise PdfError(f"{path} is {size / 1024 / 1024:.1f} MiB, larger than "
                       f"ingest.max_pdf_mb ({limit_mb:g} MiB).",
                       "Raise ingest.max_pdf_mb to accept it.")


def fetch_pdf(job: Job, client: ArxivClient, downloader: Downloader,
              max_pdf_mb: float) -> Job:
    """Download stage (I/O): get the PDF on disk and hash it."""
    src = job.source
    if src.kind == "file":
        assert src.path is not None
        path = src.path
        check_size(path, max_pdf_mb)
    elif src.kind == "arxiv":
        assert src.arxiv_id is not None
        version = src.version or (job.meta.version if job.meta else None)
        url = client.pdf_url(src.arxiv_id, version)
        name = f"{src.arxiv_id.replace('/', '_')}{f'v{version}' if version else ''}.pdf"
        path = downloader.fetch(url, name)
    else:
        assert src.url is not None
        path = downloader.fetch(src.url, url_file_name(src.url))
    return replace(job, path=path, content_hash=metadata.sha256_file(path))


def lookup_meta(client: ArxivClient, arxiv_id: str) -> PaperMeta | None:
    """arXiv metadata of one id (None when arXiv is unreachable or has no such paper)."""
    if not client.reachable:
        return None
    try:
        return client.fetch_metadata([arxiv_id]).get(arxiv_id)
    except NetworkError as err:
        log.info("arXiv unreachable: %s", err)
        return None


def identify(job: Job, extracted: extract.Extracted, lookup: MetaLookup | None) -> Job:
    """Give a local PDF its arXiv id (from the page-1 stamp) and metadata (``lookup``, when
    arXiv is reachable; else from the PDF), and the extraction's flags."""
    job = replace(job, flags=extracted.flags)
    assert job.path is not None
    if job.meta is not None:
        return job
    arxiv_id = job.source.arxiv_id
    if arxiv_id is None:
        arxiv_id = extracted.stamp[0] if extracted.stamp else None
    paper_id = arxiv_id or job.paper_id
    meta = lookup(arxiv_id) if arxiv_id and lookup is not None else None
    if meta is None:
        meta = metadata.offline_meta(paper_id, arxiv_id, job.path, extracted.pages,
                                     extracted.info)
    return replace(job, paper_id=paper_id, meta=meta)


def prepare_paper(job: Job, pages: list[Page], chunker: Chunker) -> Prepared:
    """Chunking stage (CPU): the identified paper's record, pages and chunks."""
    assert job.meta is not None and job.path is not None
    pages = [Page(job.paper_id, p.number, p.text) for p in pages]
    chunks = chunker.chunk(job.paper_id, pages)
    meta = replace(job.meta, id=job.paper_id)
    if job.source.version is not None:
        meta = replace(meta, version=job.source.version)
    title = meta.title or job.paper_id
    paper = metadata.make_paper(meta, str(job.source.url or job.path), job.content_hash,
                                pages, job.flags)
    texts = [embed_text(title, c.section, c.text) for c in chunks]
    return Prepared(job, paper, pages, chunks, texts)


def embed_paper(prepared: Prepared, embedder: Embedder) -> np.ndarray:
    """Embedding stage (model): one vector per chunk."""
    return embedder.embed(prepared.texts)


def store_paper(library: Library, prepared: Prepared, vectors: np.ndarray) -> ItemResult:
    """Writer stage (the one process holding the writer lock): the library's own copy of
    the PDF, then one SQLite transaction; a replaced version's copy goes."""
    job = prepared.job
    assert job.path is not None
    paper = replace(prepared.paper, pdf_file=library.pdfs.add(job.path, job.content_hash))
    old = library.paper(paper.id)
    library.add_paper(paper, prepared.pages, prepared.chunks, vectors)
    if old is not None and old.content_hash != paper.content_hash:
        library.pdfs.remove(old)  # the replaced version's copy
    return ItemResult(item=job.item, status="replaced" if old is not None else "ingested",
                      paper_id=paper.id, title=paper.title, pages=len(prepared.pages),
                      chunks=len(prepared.chunks))


def ingest_items(settings: Settings, library: Library, items: list[str],
                 search: str | None = None, max_results: int = 10, *,
                 reporter: Reporter | None = None, wait: bool = True, upload: bool = False,
                 on_wait: Callable[[str], None] | None = None,
                 runner: type[Ingestor] | None = None) -> IngestReport:
    """The one ingest recipe (CLI, UI, benchmarks): take the writer lock (wait for it,
    telling ``on_wait``, or fail with LibraryBusyError when ``wait`` is False), fetch,
    extract, chunk, embed and store each item, then bring the search indexes up to date.
    ``upload``: the items are browser uploads (see the module doc). ``runner``: the
    Ingestor class (this machine's threads and processes by default; ingest.commands picks
    ray_runner.RayIngestor for ``ingest.runner = "ray"``)."""
    reporter = reporter or NullReporter()
    with writer_lock(library, wait, on_wait):
        ingestor = (runner or Ingestor)(settings, library, make_chunker(settings),
                                        reporter=reporter, upload=upload)
        report = ingestor.ingest(items, search, max_results)
        reporter.stage("index", 1)
        library.refresh()
        reporter.advance("index")
    return report


class Ingestor:
    def __init__(self, settings: Settings, library: Library, chunker: Chunker, *,
                 client: ArxivClient | None = None, downloader: Downloader | None = None,
                 reporter: Reporter | None = None, upload: bool = False) -> None:
        self.settings = settings
        self.upload = upload
        self.library = library
        self.embedder = library.embedder
        self.chunker = chunker
        self.client = client or ArxivClient(settings.ingest)
        self.downloader = downloader or Downloader(settings.ingest, settings.data_dir / "pdfs")
        self.reporter = reporter or NullReporter()
        self.report = IngestReport()

    # -- planning --------------------------------------------------------------------
    def plan(self, items: list[str], search: str | None, max_results: int) -> list[Job]:
        jobs: list[Job] = []
        for item in items:
            try:
                for src in parse_item(item):
                    if self.upload:  # an uploaded file's name says nothing about it
                        src = replace(src, arxiv_id=None, version=None)
                    pid, _ = _local_id(src)
                    label = src.path.name if src.path and Path(item).is_dir() else item
                    jobs.append(Job(item=label, source=src, paper_id=pid))
            except PaperchatError as err:
                self._fail(item, "", err)
        if search:
            jobs.extend(self._search_jobs(search, max_results))
        self._resolve_metadata(jobs)
        return self._dedupe(jobs)

    def _search_jobs(self, query: str, max_results: int) -> list[Job]:
        try:
            metas = self.client.search(query, max_results)
        except PaperchatError as err:
            self._fail(f"--search {query!r}", "", err)
            return []
        if not metas:
            self._fail(f"--search {query!r}", "", SourceNotFoundError(
                f"arXiv found no paper for {query!r}.", "Try other words."))
        return [Job(item=m.arxiv_id or m.id, source=Source(kind="arxiv", raw=m.id,
                    arxiv_id=m.arxiv_id, version=None, path=None, url=None),
                    paper_id=m.id, meta=m) for m in metas]

    def _resolve_metadata(self, jobs: list[Job]) -> None:
        wanted = sorted({j.source.arxiv_id for j in jobs if j.source.arxiv_id and j.meta is None})
        found = self._fetch_metadata(jobs, wanted)
        self.report.arxiv_unreachable = not self.client.reachable
        for job in list(jobs):
            aid = job.source.arxiv_id
            if job.meta is not None or not aid:
                continue
            job.meta = found.get(aid)
            if job.meta is None and job.source.kind == "arxiv":
                if self.client.reachable:
                    self._fail(job.item, aid, SourceNotFoundError(
                        f"arXiv has no paper with id {aid}.", "Check the id."))
                    jobs.remove(job)
                else:
                    known = reading_list.by_id().get(aid)
                    job.meta = known.meta() if known else None

    def _fetch_metadata(self, jobs: list[Job], wanted: list[str]) -> dict[str, PaperMeta]:
        """arXiv metadata of ``wanted``. arXiv answers a request holding an id it rejects
        with an error entry alone: that id's jobs fail and the other ids are asked again."""
        while wanted and self.client.reachable:
            try:
                return self.client.fetch_metadata(wanted)
            except NetworkError as err:
                log.info("arXiv unreachable: %s", err)
                return {}
            except SourceNotFoundError as err:  # the API's error entry for a malformed id
                rejected = [j for j in jobs if j.source.arxiv_id and j.source.arxiv_id in str(err)]
                if not rejected:
                    return {}
                for job in rejected:
                    self._fail(job.item, job.paper_id, err)
                    jobs.remove(job)
                gone = {j.source.arxiv_id for j in rejected}
                wanted = [w for w in wanted if w not in gone]
        return {}

    def _dedupe(self, jobs: list[Job]) -> list[Job]:
        seen: set[str] = set()
        out = []
        for job in jobs:
            key = str(job.source.path or job.paper_id)
            if key not in seen:
                seen.add(key)
                out.append(job)
        return out

    def _fail(self, item: str, paper_id: str, err: BaseException) -> None:
        self.report.results.append(ItemResult(item=item, status="failed", paper_id=paper_id,
                                              reason=str(err)))

    # -- fetching --------------------------------------------------------------------
    def _unchanged_before_download(self, job: Job) -> bool:
        have = self.library.paper(job.paper_id)
        if have is None or job.source.kind != "arxiv" or job.meta is None:
            return False
        wanted_version = job.source.version or job.meta.version
        return wanted_version is not None and have.version == wanted_version

    def fetch(self, job: Job) -> Job:
        """Runs in a download thread: get the PDF on disk and hash it."""
        return fetch_pdf(job, self.client, self.downloader, self.settings.ingest.max_pdf_mb)

    def lookup(self, arxiv_id: str) -> PaperMeta | None:
        return lookup_meta(self.client, arxiv_id)

    # -- the run ---------------------------------------------------------------------
    def ingest(self, items: list[str], search: str | None = None,
               max_results: int = 10) -> IngestReport:
        start = time.perf_counter()
        jobs = self.plan(items, search, max_results)
        todo = []
        for job in jobs:
            if self._unchanged_before_download(job):
                self._done_unchanged(job)
            else:
                todo.append(job)
        for name in ("download", "extract", "embed"):
            self.reporter.stage(name, len(todo))
        self.run(todo)
        self.report.arxiv_unreachable = not self.client.reachable
        self.report.seconds = time.perf_counter() - start
        return self.report

    def run(self, todo: list[Job]) -> None:
        """Fetch, extract, chunk, embed and store ``todo``: downloads in two threads,
        extraction in ``ingest.workers`` isolated processes, embedding and writing here."""
        ing = self.settings.ingest
        with ThreadPoolExecutor(2) as dl, ExtractionPool(
                ing.workers, ing.extract_timeout_s, ing.extract_memory_mb) as ex:
            try:
                self._run(todo, dl, ex)
            except KeyboardInterrupt:  # Ctrl-C: drop the queued work, keep what is stored
                dl.shutdown(wait=False, cancel_futures=True)
                ex.shutdown(cancel=True)
                raise

    def _run(self, todo: list[Job], dl: Executor, ex: ExtractionPool) -> None:
        downloads: deque[tuple[Job, Future[Job]]] = deque((j, dl.submit(self.fetch, j))
                                                          for j in todo)
        extracts: deque[tuple[Job, Future[extract.Extracted]]] = deque()
        while downloads or extracts:
            if extracts and extracts[0][1].done():
                job, fut = extracts.popleft()
                self._finish(job, fut)
            elif downloads and downloads[0][1].done():
                job, dfut = downloads.popleft()
                self._extract(job, dfut, ex, extracts)
            else:
                pending: list[Future[Any]] = [f for _, f in list(downloads)[:1]]
                pending += [f for _, f in list(extracts)[:1]]
                wait(pending, return_when=FIRST_COMPLETED)

    def _extract(self, job: Job, dfut: Future[Job], ex: ExtractionPool,
                 extracts: deque[tuple[Job, Future[extract.Extracted]]]) -> None:
        self.reporter.advance("download", job.paper_id)
        try:
            job = dfut.result()
        except PaperchatError as err:
            self._fail(job.item, job.paper_id, err)
            self.reporter.advance("extract")
            self.reporter.advance("embed")
            return
        have = self.library.paper_by_hash(job.content_hash)
        if have is not None:
            assert job.path is not None
            self.library.pdfs.add(job.path, job.content_hash)  # stored before copies were kept
            self._done_unchanged(job, have.id)
            self.reporter.advance("extract")
            self.reporter.advance("embed")
            return
        assert job.path is not None
        ing = self.settings.ingest
        fut = ex.submit(job.item, extract.extract_document, job.path, job.paper_id,
                        ing.extractor, ing.max_pages)
        extracts.append((job, fut))

    def _finish(self, job: Job, fut: Future[extract.Extracted]) -> None:
        self.reporter.advance("extract", job.paper_id)
        try:
            extracted = fut.result()
            job = identify(job, extracted, self.lookup)
            pages = [Page(job.paper_id, p.number, p.text) for p in extracted.pages]
            self._refuse_replacing_by_upload(job)
            self._store(job, pages)
        except DiskFullError:
            raise
        except PaperchatError as err:
            self._fail(job.item, job.paper_id, err)
        finally:
            self.reporter.advance("embed", job.paper_id)

    def _refuse_replacing_by_upload(self, job: Job) -> None:
        """An upload never replaces a paper: one whose page stamp names a paper the library
        holds (same content was found unchanged before extraction) fails instead."""
        if self.upload and self.library.paper(job.paper_id) is not None:
            raise IngestError(
                f"{job.item} is {job.paper_id}, which the library already holds (another "
                "version or copy of it); the upload was not added.",
                f"Remove {job.paper_id} first to replace it.")

    def _store(self, job: Job, pages: list[Page]) -> None:
        prepared = prepare_paper(job, pages, self.chunker)
        vectors = embed_paper(prepared, self.embedder)
        self.report.results.append(store_paper(self.library, prepared, vectors))

    def _done_unchanged(self, job: Job, paper_id: str | None = None) -> None:
        have = self.library.paper(paper_id or job.paper_id)
        self.report.results.append(ItemResult(
            item=job.item, status="unchanged", paper_id=have.id if have else job.paper_id,
            title=have.title if have else "", pages=have.pages if have else 0,
            chunks=have.chunks if have else 0))
