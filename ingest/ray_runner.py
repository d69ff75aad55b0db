"""`paperchat ingest --runner ray`: the ingest stages as a Ray Data pipeline.

    from_items(jobs) -> map(fetch_pdf)            I/O tasks, two downloads at a time
                     -> map(extract_pages)        CPU tasks
                     -> map(identify, prepare)    CPU tasks (Ray fuses them with extraction)
                     -> map_batches(EmbedStage)   an actor pool; one GPU per actor on GPUs
                     -> the driver: store_paper   one SQLite transaction per paper

The stage functions are those of :mod:`ingest.pipeline` (the local runner calls the same
ones), so both runners store the same papers, chunks and vectors. Planning (arXiv metadata),
the writer lock, the writes and the index refresh stay in this process: the driver takes
finished papers from the stream ``ray.commit_batch`` at a time, in the order of the items
(so chunk ids match the local runner's), and stores each in one transaction. A driver
killed mid-ingest loses the papers in flight only; the next run skips the stored ones.

Each paper travels as one row holding its pickled :class:`Work`. A stage that fails with a
PaperchatError marks that paper failed and passes it on; any other error stops the run.
A missing arXiv id lookup (a local PDF identified by its page stamp) goes through one actor
holding one ArxivClient, so arXiv's request interval holds across the cluster.

Workers import this project: on a cluster, install paperchat (with the same version) on every
node, and keep the data directory (PDF cache) and local PDFs on a file system all nodes see.
This module is imported only for ``ingest.runner = "ray"``; Ray is imported inside it only.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import ConfigError, IngestError, PaperchatError
from core.settings import Settings
from core.types import PaperMeta
from ingest import extract
from ingest.arxiv_api import ArxivClient
from ingest.chunk import Chunker
from ingest.fetch import Downloader
from ingest.pipeline import (
    Ingestor,
    ItemResult,
    Job,
    Prepared,
    embed_paper,
    fetch_pdf,
    identify,
    lookup_meta,
    make_chunker,
    prepare_paper,
    store_paper,
)

log = logging.getLogger(__name__)
INSTALL_HINT = "Run `pip install 'paperchat[ray]'` (or `make setup`)."


@dataclass
class Work:
    """One paper on its way through the pipeline."""

    job: Job
    status: str = "todo"  # todo | unchanged | failed | embedded
    reason: str = ""
    extracted: extract.Extracted | None = None
    prepared: Prepared | None = None
    vectors: np.ndarray | None = None


def _pack(work: Work) -> dict[str, Any]:
    return {"work": pickle.dumps(work, protocol=pickle.HIGHEST_PROTOCOL)}


def _unpack(row: dict[str, Any]) -> Work:
    work: Work = pickle.loads(row["work"])
    return work


def _failed(work: Work, err: PaperchatError) -> dict[str, Any]:
    work.status, work.reason, work.extracted, work.prepared = "failed", str(err), None, None
    return _pack(work)


# -- stages, run in Ray workers -------------------------------------------------------------


def fetch_row(row: dict[str, Any], settings: Settings, known: frozenset[str]) -> dict[str, Any]:
    """I/O task: the PDF on disk (``known``: content hashes the library holds)."""
    work = _unpack(row)
    try:
        with Downloader(settings.ingest, settings.data_dir / "pdfs") as downloader:
            work.job = fetch_pdf(work.job, ArxivClient(settings.ingest), downloader,
                                 settings.ingest.max_pdf_mb)
    except PaperchatError as err:
        return _failed(work, err)
    if work.job.content_hash in known:
        work.status = "unchanged"
    return _pack(work)


def extract_row(row: dict[str, Any], extractor: str, max_pages: int) -> dict[str, Any]:
    """CPU task: the PDF's pages, page-1 stamp, info and flags."""
    work = _unpack(row)
    if work.status != "todo":
        return row
    assert work.job.path is not None
    try:
        work.extracted = extract.extract_document(work.job.path, work.job.paper_id, extractor,
                                                  max_pages)
    except PaperchatError as err:
        return _failed(work, err)
    return _pack(work)


_CHUNKERS: dict[str, Chunker] = {}  # one per worker process and settings (a tokenizer load)


def chunk_row(row: dict[str, Any], settings: Settings, lookup: Any) -> dict[str, Any]:
    """CPU task: identify the paper (``lookup``: the MetaLookup actor or None) and chunk it."""
    work = _unpack(row)
    if work.status != "todo":
        return row
    assert work.extracted is not None
    key = settings.model_dump_json()
    if key not in _CHUNKERS:
        _CHUNKERS[key] = make_chunker(settings)

    def ask(arxiv_id: str) -> PaperMeta | None:
        import ray

        meta: PaperMeta | None = ray.get(lookup.lookup.remote(arxiv_id))
        return meta

    try:
        job = identify(work.job, work.extracted, ask if lookup is not None else None)
        work.prepared = prepare_paper(job, work.extracted.pages, _CHUNKERS[key])
    except PaperchatError as err:
        return _failed(work, err)
    work.job, work.extracted = job, None
    return _pack(work)


class EmbedStage:
    """Actor: one embedder, kept for the whole run; embeds each paper of a batch as the
    local runner does (one ``embed`` call a paper)."""

    def __init__(self, settings: Settings, backend: str, threads: int) -> None:
        from index.open import make_embedder

        if backend == "torch":  # Ray gives an actor OMP_NUM_THREADS = its CPUs (1)
            import torch

            torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
        emb = settings.embedding.model_copy(update={"backend": backend})
        self.embedder = make_embedder(settings.model_copy(update={"embedding": emb}))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for blob in batch["work"]:
            work = _unpack({"work": blob})
            if work.status == "todo":
                assert work.prepared is not None
                work.vectors = embed_paper(work.prepared, self.embedder)
                work.status = "embedded"
            out.append(_pack(work)["work"])
        return {"work": np.array(out, dtype=object)}


class MetaLookup:
    """Actor: the cluster's one arXiv client (its request interval holds for all tasks)."""

    def __init__(self, settings: Settings) -> None:
        self.client = ArxivClient(settings.ingest)

    def lookup(self, arxiv_id: str) -> PaperMeta | None:
        return lookup_meta(self.client, arxiv_id)


# -- the driver -------------------------------------------------------------------------------


def import_ray() -> Any:
    """Ray, quiet (no progress bars, usage stats or worker logs on the terminal)."""
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise ConfigError("--runner ray needs Ray, which is not installed.",
                          INSTALL_HINT) from err
    return ray


def probe_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a head that does not answer: ray.init retries a dead host:port forever.
    ('auto' and ray:// addresses are left to Ray, which reports them itself.)"""
    host, sep, port = address.rpartition(":")
    if address == "auto" or address.startswith("ray://") or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise ConfigError(f"No Ray cluster answers at {address} ({err.strerror or err}).",
                          "Start one with `ray start --head`, or pass its address "
                          "(host:port) or 'auto' with --ray-address.") from err


@contextmanager
def ray_session(settings: Settings) -> Iterator[Any]:
    """Connected to ``ray.address``, or a local Ray instance for the run (stopped after)."""
    ray = import_ray()
    cfg = settings.ray
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if cfg.address:
            probe_address(cfg.address)
            ray.init(address=cfg.address, **quiet)
        else:  # the memory monitor watches the whole machine: off for a shared box
            ray.init(num_cpus=cfg.local_cpus or None, include_dashboard=False,
                     object_store_memory=cfg.object_store_mb * 2**20,
                     _system_config={"memory_monitor_refresh_ms": 0}, **quiet)
    except (ConnectionError, ray.exceptions.RayError) as err:
        where = cfg.address or "a local instance"
        why = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else repr(err)
        raise ConfigError(f"Cannot start or reach the Ray cluster at {where}: {why}.",
                          "Check --ray-address (host:port of the head, or 'auto').") from err
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.execution_options.preserve_order = True  # commit in item order, as the local runner
        for name in ("ray", "ray.data"):  # Ray Data sets its own level on import
            logging.getLogger(name).setLevel(logging.ERROR)
        yield ray
    finally:
        ray.shutdown()


class RayIngestor(Ingestor):
    """The local runner's planning and bookkeeping; the stages run on Ray."""

    def run(self, todo: list[Job]) -> None:
        if not todo:
            return
        with ray_session(self.settings) as ray:
            dataset = self._dataset(ray, todo)
            try:
                batches = dataset.iter_batches(batch_size=max(1, self.settings.ray.commit_batch),
                                               batch_format="numpy", prefetch_batches=1)
                for batch in batches:
                    for blob in batch["work"]:
                        self._commit(_unpack({"work": blob}))
            except ray.exceptions.RayError as err:
                first = str(err).strip().splitlines()[-1] if str(err).strip() else repr(err)
                raise IngestError(f"The Ray pipeline failed: {first}",
                                  "The papers stored before it are kept; run the command "
                                  "again to finish.") from err

    def _dataset(self, ray: Any, todo: list[Job]) -> Any:
        s = self.settings
        known = frozenset(p.content_hash for p in self.library.papers())
        gpus = ray.cluster_resources().get("GPU", 0) >= 1
        backend = self.embedder.backend
        if gpus and self.embedder.vectors == "fp32":
            backend = "torch"  # on the GPU (fp16, as the local runner on CUDA)
        lookup = None
        if self.client.reachable and any(j.meta is None for j in todo):
            lookup = ray.remote(num_cpus=0)(MetaLookup).remote(s)
        actors = max(1, min(s.ray.embed_actors, len(todo)))
        ds = ray.data.from_items([_pack(Work(job)) for job in todo],
                                 override_num_blocks=len(todo))
        ds = ds.map(fetch_row, fn_kwargs={"settings": s, "known": known}, num_cpus=0,
                    compute=ray.data.TaskPoolStrategy(size=2))
        ds = ds.map(extract_row, fn_kwargs={"extractor": s.ingest.extractor,
                                            "max_pages": s.ingest.max_pages}, num_cpus=1)
        ds = ds.map(chunk_row, fn_kwargs={"settings": s, "lookup": lookup}, num_cpus=1)
        with warnings.catch_warnings():  # max_restarts has no named parameter yet
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._embed_stage(ray, ds, backend, actors, gpus)

    def _embed_stage(self, ray: Any, ds: Any, backend: str, actors: int, gpus: bool) -> Any:
        s = self.settings
        return ds.map_batches(
            EmbedStage, fn_constructor_kwargs={"settings": s, "backend": backend,
                                               "threads": s.ray.embed_threads},
            compute=ray.data.ActorPoolStrategy(size=actors), batch_size=1,
            batch_format="numpy", num_cpus=1, num_gpus=1 if gpus else 0,
            # no restarts: a dead actor stops the run (the next run finishes it); this also
            # keeps the CPU stages in their own tasks (Ray fuses maps of equal arguments)
            max_restarts=0)

    def _commit(self, work: Work) -> None:
        """Store one finished paper (the writer stage), as the local runner would."""
        job = work.job
        for stage in ("download", "extract", "embed"):
            self.reporter.advance(stage, job.paper_id)
        if work.status == "failed":
            self.report.results.append(ItemResult(item=job.item, status="failed",
                                                  paper_id=job.paper_id, reason=work.reason))
            return
        have = self.library.paper_by_hash(job.content_hash)
        if work.status == "unchanged" or have is not None:
            assert job.path is not None
            self.library.pdfs.add(job.path, job.content_hash)  # stored before copies were kept
            self._done_unchanged(job, have.id if have else None)
            return
        assert work.prepared is not None and work.vectors is not None
        self.report.results.append(store_paper(self.library, work.prepared, work.vectors))
