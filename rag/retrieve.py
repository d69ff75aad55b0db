"""Hybrid retrieval: dense (FAISS) and BM25 candidates fused by reciprocal rank fusion,
references dropped, capped per paper, adjacent chunks merged, optional cross-encoder."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core.errors import EmptyLibraryError, UsageError
from core.settings import Settings
from core.types import Hit
from index.library import Library

MAX_DEPTH = 3200  # candidates per retriever when the first fetch_k are capped away
YEAR_RANGE = re.compile(r"(\d{4})?\s*([-–]\s*(\d{4})?)?")


@dataclass
class Retrieval:
    query: str
    hits: list[Hit]
    best_dense: float  # best cosine over the whole library (abstention signal)
    timings_ms: dict[str, float] = field(default_factory=dict)


def rrf(rankings: list[list[int]], k: int,
        weights: list[float] | None = None) -> dict[int, float]:
    """Weighted reciprocal rank fusion: sum of weight / (k + rank), ranks from 1."""
    scores: dict[int, float] = defaultdict(float)
    for i, ranking in enumerate(rankings):
        w = weights[i] if weights else 1.0
        for rank, cid in enumerate(ranking, start=1):
            scores[cid] += w / (k + rank)
    return dict(scores)


def merge_text(a: str, b: str, probe: int = 40) -> str:
    """Join two consecutive, overlapping chunk texts without repeating the overlap."""
    head = b[:probe]
    pos = a.find(head) if head else -1
    return a[:pos] + b if pos >= 0 else f"{a} {b}"


def merge_adjacent(hits: list[Hit]) -> list[Hit]:
    """Merge hits on consecutive chunks of one paper into one passage (best score kept)."""
    by_key = {(h.chunk.paper_id, h.chunk.ordinal): h for h in hits}
    merged: list[Hit] = []
    used: set[tuple[str, int]] = set()
    for h in hits:
        key = (h.chunk.paper_id, h.chunk.ordinal)
        if key in used:
            continue
        first = h.chunk.ordinal
        while (h.chunk.paper_id, first - 1) in by_key and (h.chunk.paper_id, first - 1) not in used:
            first -= 1
        run = []
        o = first
        while (h.chunk.paper_id, o) in by_key and (h.chunk.paper_id, o) not in used:
            run.append(by_key[(h.chunk.paper_id, o)])
            used.add((h.chunk.paper_id, o))
            o += 1
        merged.append(_merge_run(run) if len(run) > 1 else h)
    return sorted(merged, key=lambda x: -x.score)


def _merge_run(run: list[Hit]) -> Hit:
    text = run[0].chunk.text
    for h in run[1:]:
        text = merge_text(text, h.chunk.text)
    c0, c1 = run[0].chunk, run[-1].chunk
    chunk = replace(c0, text=text, page_end=max(c.chunk.page_end for c in run),
                    char_end=c1.char_end if c1.page_start == c0.page_start else c0.char_end)
    best = max(run, key=lambda x: x.score)
    dense = [x.dense_score for x in run if x.dense_score is not None]
    return replace(best, chunk=chunk, dense_score=max(dense) if dense else None)


def parse_years(text: str) -> tuple[int, int]:
    """'2020' -> (2020, 2020); '2017-2020'; open ranges '2019-' and '-2019'."""
    m = YEAR_RANGE.fullmatch(text.strip())
    if m is None or not (m.group(1) or m.group(3)):
        raise UsageError(f"Malformed year range {text!r}.",
                         "Use YEAR, FROM-TO, FROM- or -TO with four-digit years, e.g. 2017-2020.")
    lo = int(m.group(1)) if m.group(1) else 0
    hi = int(m.group(3)) if m.group(3) else (9999 if m.group(2) else lo)
    if lo > hi:
        raise UsageError(f"Year range {text!r} ends before it starts.",
                         "Give the earlier year first, e.g. 2017-2020.")
    return lo, hi


class Retriever:
    def __init__(self, settings: Settings, library: Library, reranker: Any = None) -> None:
        self.settings = settings
        self.library = library
        self.reranker = reranker
        if reranker is None and settings.retrieval.reranker:
            from rag.rerank import CrossEncoderReranker

            self.reranker = CrossEncoderReranker(
                settings.retrieval.reranker, settings.embedding.device,
                threads=settings.embedding.query_threads)

    def search(self, query: str, k: int | None = None, paper_ids: list[str] | None = None,
               mode: str | None = None, years: tuple[int, int] | None = None) -> Retrieval:
        cfg = self.settings.retrieval
        k = k or cfg.k
        mode = mode or cfg.mode
        t = {"start": time.perf_counter()}
        if self.library.chunk_count() == 0:
            raise EmptyLibraryError()
        allowed = self._allowed(paper_ids, years)
        qvec = self.library.embedder.embed([query], "query")[0]
        t["embed"] = time.perf_counter()
        depth = cfg.fetch_k
        while True:  # deeper when the per-paper cap left fewer than k of the candidates
            dense = self.library.dense_search(qvec, depth, allowed)
            t["dense"] = time.perf_counter()
            sparse = self.library.bm25_search(query, depth, allowed) if mode != "dense" else []
            t["bm25"] = time.perf_counter()
            rankings = {"hybrid": [[c for c, _ in dense], [c for c, _ in sparse]],
                        "dense": [[c for c, _ in dense]], "bm25": [[c for c, _ in sparse]]}[mode]
            weights = [cfg.dense_weight, cfg.bm25_weight] if mode == "hybrid" else None
            hits = self._hits(rrf(rankings, cfg.rrf_k, weights), dict(dense), dict(sparse))
            t["fuse"] = time.perf_counter()
            if self.reranker is not None and hits:
                hits = self.reranker.rerank(query, self._capped(
                    hits, max(cfg.rerank_candidates, 2 * k)))
            t["rerank"] = time.perf_counter()
            chosen = self._select(hits, k)
            t["select"] = time.perf_counter()
            if len(chosen) >= k or max(len(dense), len(sparse)) < depth or depth >= MAX_DEPTH:
                break
            depth *= 4
        hits = chosen
        best = max((s for _, s in dense), default=0.0)
        names = ("embed", "dense", "bm25", "fuse", "rerank", "select")
        timings = {name: (t[name] - t[prev]) * 1000
                   for name, prev in zip(names, ("start", *names[:-1]), strict=True)}
        if self.reranker is None:
            del timings["rerank"]
        timings["total"] = (t["select"] - t["start"]) * 1000
        return Retrieval(query=query, hits=hits, best_dense=best, timings_ms=timings)

    def _allowed(self, paper_ids: list[str] | None,
                 years: tuple[int, int] | None) -> np.ndarray | None:
        if years is not None:
            lo, hi = years
            in_years = [p.id for p in self.library.papers()
                        if p.year is not None and lo <= p.year <= hi]
            paper_ids = [p for p in (paper_ids or in_years) if p in in_years]
            if not paper_ids:
                return np.zeros(0, dtype=np.int64)
        return self.library.allowed_ids(paper_ids)

    def _hits(self, fused: dict[int, float], dense: dict[int, float],
              sparse: dict[int, float]) -> list[Hit]:
        chunks = self.library.chunks(list(fused))
        papers = {p.id: p for p in self.library.papers()}
        refs = self.settings.retrieval.include_references
        hits = []
        for cid, score in sorted(fused.items(), key=lambda x: -x[1]):
            chunk = chunks.get(cid)
            # a paper removed between the two reads: its chunks are skipped like removed ones
            paper = papers.get(chunk.paper_id) if chunk is not None else None
            if chunk is None or paper is None or (chunk.is_reference and not refs):
                continue
            hits.append(Hit(chunk=chunk, paper_title=paper.title, paper_year=paper.year,
                            score=score, dense_score=dense.get(cid), bm25_score=sparse.get(cid),
                            arxiv_id=paper.arxiv_id, authors=paper.authors,
                            pdf_url=paper.pdf_url))
        return hits

    def _capped(self, hits: list[Hit], n: int) -> list[Hit]:
        """The first ``n`` hits within the per-paper cap: the candidates a reranker rescores
        (so that a cap cannot leave fewer than k passages after reranking)."""
        per_paper: dict[str, int] = defaultdict(int)
        out: list[Hit] = []
        for h in hits:
            if per_paper[h.chunk.paper_id] < self.settings.retrieval.per_paper_cap:
                per_paper[h.chunk.paper_id] += 1
                out.append(h)
                if len(out) >= n:
                    break
        return out

    def _select(self, hits: list[Hit], k: int) -> list[Hit]:
        per_paper: dict[str, int] = defaultdict(int)
        chosen: list[Hit] = []
        for h in hits:
            if per_paper[h.chunk.paper_id] >= self.settings.retrieval.per_paper_cap:
                continue
            per_paper[h.chunk.paper_id] += 1
            chosen.append(h)
            if len(chosen) >= k and len(merge_adjacent(chosen)) >= k:
                break
        merged = merge_adjacent(chosen)
        return [replace(h, rank=i + 1) for i, h in enumerate(merged)]

