"""Hybrid retrieval: dense (FAISS) and BM25 candidates, plus the candidates of the papers
the question names, fused by weighted reciprocal rank fusion with a ranking of the
candidates by their best sentence; references dropped, capped per paper (not a named
paper), adjacent chunks merged, cut sentences completed, optional cross-encoder.

The order never depends on ``k``: every search ranks the same candidates the same way and
returns the first ``k`` (a deeper search, when the cap leaves fewer than ``k``, only
appends), so the first n hits are the same for every k >= n.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core.errors import EmptyLibraryError, UsageError
from core.settings import Settings
from core.text import tokenize
from core.types import Hit, Paper
from index.library import Library
from index.names import derive_aliases
from index.sentences import ChunkSentences
from rag.names import PaperNames, asks_which_paper
from rag.sentence_rank import best_sentence_scores, query_weights

MAX_DEPTH = 3200  # candidates per retriever when the first fetch_k are capped away
FRONT_PAPERS = 2  # papers led by their front chunk when the question asks which paper
MAX_NAMED = 3  # named papers that are favoured (a longer list names no paper in particular)
YEAR_RANGE = re.compile(r"(\d{4})?\s*([-–]\s*(\d{4})?)?")


@dataclass
class Retrieval:
    query: str
    hits: list[Hit]
    best_dense: float  # best cosine over the whole library (abstention signal)
    timings_ms: dict[str, float] = field(default_factory=dict)
    named: list[str] = field(default_factory=list)  # ids of the papers the query names


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
    """Join two consecutive, overlapping chunk texts without repeating the overlap: ``b``
    starts inside the tail of ``a`` (the last place its head occurs there; a formula or a
    phrase repeated earlier in ``a`` must not cut ``a`` short)."""
    head = b[:probe]
    pos = a.rfind(head, max(0, len(a) - len(b))) if head else -1
    return a[:pos] + b if pos >= 0 else f"{a} {b}"


def merge_runs(hits: list[Hit]) -> list[tuple[Hit, range]]:
    """Hits on consecutive chunks of one paper merged into one passage, at the place of its
    best-ranked chunk (``hits`` is in rank order), each with the chunk ordinals it covers."""
    by_key = {(h.chunk.paper_id, h.chunk.ordinal): h for h in hits}
    merged: list[tuple[Hit, range]] = []
    used: set[tuple[str, int]] = set()
    for h in hits:
        pid = h.chunk.paper_id
        if (pid, h.chunk.ordinal) in used:
            continue
        first = h.chunk.ordinal
        while (pid, first - 1) in by_key and (pid, first - 1) not in used:
            first -= 1
        run = []
        o = first
        while (pid, o) in by_key and (pid, o) not in used:
            run.append(by_key[(pid, o)])
            used.add((pid, o))
            o += 1
        merged.append((_merge_run(run, h) if len(run) > 1 else h, range(first, o)))
    return merged


def merge_adjacent(hits: list[Hit]) -> list[Hit]:
    """``merge_runs`` without the ordinals."""
    return [h for h, _ in merge_runs(hits)]


def _merge_run(run: list[Hit], best: Hit) -> Hit:
    text = run[0].chunk.text
    for h in run[1:]:
        text = merge_text(text, h.chunk.text)
    c0, c1 = run[0].chunk, run[-1].chunk
    chunk = replace(c0, text=text, page_end=max(c.chunk.page_end for c in run),
                    char_end=c1.char_end if c1.page_start == c0.page_start else c0.char_end)
    dense = [x.dense_score for x in run if x.dense_score is not None]
    return replace(best, chunk=chunk, dense_score=max(dense) if dense else None)


def whole_sentences(h: Hit, sentences: dict[int, ChunkSentences]) -> Hit:
    """The hit with its first and last sentence completed from the neighbouring chunks
    when the chunk boundary cuts them."""
    s = sentences.get(h.chunk.id) if h.chunk.id is not None else None
    if s is None or not (s.head or s.tail):
        return h
    c = h.chunk
    chunk = replace(c, text=f"{s.head}{c.text}{s.tail}",
                    char_start=max(0, c.char_start - len(s.head)),
                    char_end=c.char_end + len(s.tail))
    return replace(h, chunk=chunk)


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


def promote_named(hits: list[tuple[Hit, range]], named: list[str],
                  within: int) -> list[tuple[Hit, range]]:
    """Move the best passage of each named paper up to place ``within`` when it is lower,
    so that a question naming two papers gets evidence from both."""
    out = list(hits)
    for pid in named:
        at = next((i for i, (h, _) in enumerate(out) if h.chunk.paper_id == pid), None)
        if at is not None and at >= within:
            hit, ordinals = out.pop(at)
            out.insert(within - 1, (replace(hit, score=out[within - 1][0].score), ordinals))
    return out


@dataclass
class Query:
    """What one search needs, computed once: the text, its vector, the named papers, the
    allowed chunk ids and the uncapped papers."""

    text: str
    vector: np.ndarray
    mode: str
    allowed: np.ndarray | None
    named: list[str]
    uncapped: set[str]
    timings: dict[str, float]
    which_paper: bool = False  # "which paper ...?": lead each of the first papers with its front


class Retriever:
    def __init__(self, settings: Settings, library: Library, reranker: Any = None) -> None:
        self.settings = settings
        self.library = library
        self.reranker = reranker
        self._names: tuple[tuple[int, int], PaperNames] | None = None
        self._paper_chunks: dict[tuple[tuple[int, int], str], np.ndarray] = {}
        if reranker is None and settings.retrieval.reranker:
            from rag.rerank import CrossEncoderReranker

            self.reranker = CrossEncoderReranker(
                settings.retrieval.reranker, settings.embedding.device,
                threads=settings.embedding.query_threads)

    def search(self, query: str, k: int | None = None, paper_ids: list[str] | None = None,
               mode: str | None = None, years: tuple[int, int] | None = None) -> Retrieval:
        cfg = self.settings.retrieval
        k = k or cfg.k
        start = time.perf_counter()
        if self.library.chunk_count() == 0:
            raise EmptyLibraryError()
        allowed, chosen = self._allowed(paper_ids, years)
        vector = self.library.embedder.embed([query], "query")[0]
        timings = {"embed": (time.perf_counter() - start) * 1000}
        named = self.named_papers(query, chosen) if cfg.paper_aware else []
        q = Query(query, vector, mode or cfg.mode, allowed, named,
                  set(named) | set(chosen or ()), timings,
                  which_paper=cfg.paper_aware and asks_which_paper(query))
        hits: list[Hit] = []
        used: set[tuple[str, int]] = set()
        depth, best = cfg.fetch_k, 0.0
        while True:  # deeper only when the cap left fewer than k: what is found is appended
            level, exhausted, best_here = self._ranked(q, depth)
            best = max(best, best_here)
            for h, ordinals in level:
                span = {(h.chunk.paper_id, o) for o in ordinals}
                # a deeper level never outranks what is already there, nor passes the cap
                if not span & used and self._within_cap(h.chunk.paper_id, len(span), used, q):
                    hits.append(replace(h, score=min(h.score, hits[-1].score)) if hits else h)
                    used |= span
            if len(hits) >= k or exhausted or depth >= MAX_DEPTH:
                break
            depth *= 4
        hits = [replace(h, rank=i + 1) for i, h in enumerate(hits[:k])]
        timings["total"] = (time.perf_counter() - start) * 1000
        return Retrieval(query=query, hits=hits, best_dense=best, timings_ms=timings,
                         named=named)

    # -- papers --------------------------------------------------------------------
    def named_papers(self, query: str, chosen: list[str] | None = None) -> list[str]:
        """The papers the query names (within ``chosen`` when given), at most MAX_NAMED."""
        counters = self.library.counters()
        if self._names is None or self._names[0] != counters:
            self._names = (counters, PaperNames(self._papers_with_aliases()))
        named = [p for p in self._names[1].named(query) if chosen is None or p in chosen]
        return named if len(named) <= MAX_NAMED else []

    def _papers_with_aliases(self) -> list[Paper]:
        """The library's papers; one ingested before aliases existed gets them derived here
        from its stored metadata and text, in memory (`paperchat reindex` stores them)."""
        papers = []
        for p in self.library.papers():
            if not p.aliases:
                text = "\n".join(pg.text for pg in self.library.pages_of(p.id)[:3])
                p = replace(p, aliases=derive_aliases(p.title, p.abstract, p.authors, p.year,
                                                      text))
            papers.append(p)
        return papers

    def _allowed(self, paper_ids: list[str] | None,
                 years: tuple[int, int] | None) -> tuple[np.ndarray | None, list[str] | None]:
        """The chunk ids a search may return (None: all) and the papers they come from."""
        if years is not None:
            lo, hi = years
            in_years = [p.id for p in self.library.papers()
                        if p.year is not None and lo <= p.year <= hi]
            paper_ids = [p for p in (paper_ids or in_years) if p in in_years]
            if not paper_ids:
                return np.zeros(0, dtype=np.int64), []
        return self.library.allowed_ids(paper_ids), paper_ids

    def _chunks_of(self, paper_id: str, allowed: np.ndarray | None) -> np.ndarray:
        key = (self.library.counters(), paper_id)
        ids = self._paper_chunks.get(key)
        if ids is None:
            self._paper_chunks = {k: v for k, v in self._paper_chunks.items() if k[0] == key[0]}
            ids = self.library.allowed_ids([paper_id])
            assert ids is not None
            self._paper_chunks[key] = ids
        return ids if allowed is None else np.intersect1d(ids, allowed)

    # -- ranking -------------------------------------------------------------------
    def _rankings(self, q: Query, depth: int) -> tuple[list[list[int]], list[float],
                                                         dict[int, float], dict[int, float],
                                                         bool]:
        """The rankings to fuse and their weights, the dense and BM25 scores, and whether
        the retrievers ran out of candidates."""
        cfg = self.settings.retrieval
        t = time.perf_counter()
        dense = self.library.dense_search(q.vector, depth, q.allowed)
        q.timings["dense"] = q.timings.get("dense", 0.0) + (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        sparse = self.library.bm25_search(q.text, depth, q.allowed) if q.mode != "dense" else []
        q.timings["bm25"] = q.timings.get("bm25", 0.0) + (time.perf_counter() - t) * 1000
        use_dense, use_bm25 = q.mode != "bm25", q.mode != "dense"
        hybrid = q.mode == "hybrid"
        rankings: list[list[int]] = []
        weights: list[float] = []
        scores = [(dense, use_dense, cfg.dense_weight if hybrid else 1.0),
                  (sparse, use_bm25, cfg.bm25_weight if hybrid else 1.0)]
        t = time.perf_counter()
        for pid in q.named:
            ids = self._chunks_of(pid, q.allowed)
            scores.append((self.library.dense_search(q.vector, cfg.named_fetch_k, ids),
                           use_dense, cfg.named_weight * (cfg.dense_weight if hybrid else 1.0)))
            scores.append((self.library.bm25_search(q.text, cfg.named_fetch_k, ids)
                           if use_bm25 else [], use_bm25,
                           cfg.named_weight * (cfg.bm25_weight if hybrid else 1.0)))
        q.timings["named"] = q.timings.get("named", 0.0) + (time.perf_counter() - t) * 1000
        for found, used, weight in scores:
            if used:
                rankings.append([c for c, _ in found])
                weights.append(weight)
        exhausted = max(len(dense), len(sparse)) < depth
        return rankings, weights, dict(dense), dict(sparse), exhausted

    def _ranked(self, q: Query, depth: int) -> tuple[list[tuple[Hit, range]], bool, float]:
        """Every candidate at this depth in its final order (capped, merged, promoted),
        whether the retrievers ran out, and the best dense score."""
        cfg = self.settings.retrieval
        rankings, weights, dense, sparse, exhausted = self._rankings(q, depth)
        t = time.perf_counter()
        fused = rrf(rankings, cfg.rrf_k, weights)
        hits = self._hits(fused, dense, sparse)
        sentences: dict[int, ChunkSentences] = {}
        if (cfg.evidence_weight > 0 or cfg.whole_sentences) and hits:
            sentences = self.library.sentences([h.chunk for h in hits])
        if cfg.evidence_weight > 0 and sentences:
            hits = self._with_evidence(q, hits, sentences)
        q.timings["fuse"] = q.timings.get("fuse", 0.0) + (time.perf_counter() - t) * 1000
        if self.reranker is not None and hits:
            t = time.perf_counter()
            top = self._capped(hits, cfg.rerank_candidates, q.uncapped)
            hits = self.reranker.rerank(q.text, top)
            q.timings["rerank"] = q.timings.get("rerank", 0.0) + (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        chosen = self._capped(hits, len(hits), q.uncapped)
        if q.which_paper:
            chosen = self._fronts_first(chosen, q.allowed, dense, sparse)
        if cfg.whole_sentences:
            chosen = [whole_sentences(h, sentences) for h in chosen]
        runs = promote_named(merge_runs(chosen), q.named, cfg.named_within)
        q.timings["select"] = q.timings.get("select", 0.0) + (time.perf_counter() - t) * 1000
        return runs, exhausted, max(dense.values(), default=0.0)

    def _fronts_first(self, hits: list[Hit], allowed: np.ndarray | None,
                      dense: dict[int, float], sparse: dict[int, float]) -> list[Hit]:
        """Each of the first FRONT_PAPERS papers led by its front chunk (title and abstract:
        what says what a paper introduced), the papers' order unchanged."""
        out = list(hits)
        for pid in list(dict.fromkeys(h.chunk.paper_id for h in hits))[:FRONT_PAPERS]:
            ids = self._chunks_of(pid, allowed)
            if not len(ids):
                continue
            front = int(ids.min())  # chunk ids follow the paper's order
            at = next(i for i, h in enumerate(out) if h.chunk.paper_id == pid)
            have = next((i for i, h in enumerate(out) if h.chunk.id == front), None)
            if have is not None:
                hit = out.pop(have)
            else:
                found = self._hits({front: out[at].score}, dense, sparse)
                if not found:
                    continue
                hit = found[0]
            out.insert(at, replace(hit, score=out[at].score))
        return out

    def _with_evidence(self, q: Query, hits: list[Hit],
                       sentences: dict[int, ChunkSentences]) -> list[Hit]:
        """The hits re-fused with their ranking by best sentence, best first."""
        cfg = self.settings.retrieval
        weights = query_weights(q.text, self.library.term_idf(tokenize(q.text)))
        best = best_sentence_scores(q.vector, weights, sentences, cfg.evidence_dense_share)
        order = sorted(best, key=lambda cid: (-best[cid], cid))
        bonus = rrf([order], cfg.rrf_k, [cfg.evidence_weight])
        rescored = [replace(h, score=h.score + bonus.get(h.chunk.id or -1, 0.0)) for h in hits]
        return sorted(rescored, key=lambda h: (-h.score, h.chunk.id or 0))

    def _hits(self, fused: dict[int, float], dense: dict[int, float],
              sparse: dict[int, float]) -> list[Hit]:
        chunks = self.library.chunks(list(fused))
        papers = {p.id: p for p in self.library.papers()}
        refs = self.settings.retrieval.include_references
        hits = []
        for cid, score in sorted(fused.items(), key=lambda x: (-x[1], x[0])):
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

    def _within_cap(self, paper_id: str, chunks: int, used: set[tuple[str, int]],
                    q: Query) -> bool:
        """Whether ``chunks`` more chunks of the paper keep it within the per-paper cap,
        given the chunks already chosen (``used``); a named or chosen paper has no cap."""
        if paper_id in q.uncapped:
            return True
        have = sum(1 for pid, _ in used if pid == paper_id)
        return have + chunks <= self.settings.retrieval.per_paper_cap

    def _capped(self, hits: list[Hit], n: int, uncapped: set[str]) -> list[Hit]:
        """The first ``n`` hits within the per-paper cap (papers in ``uncapped`` have none)."""
        per_paper: dict[str, int] = defaultdict(int)
        out: list[Hit] = []
        for h in hits:
            pid = h.chunk.paper_id
            if pid in uncapped or per_paper[pid] < self.settings.retrieval.per_paper_cap:
                per_paper[pid] += 1
                out.append(h)
                if len(out) >= n:
                    break
        return out
