"""Typed values passed between the stages (one-way data flow, see DESIGN.md).

ingest:  Source -> Paper + [Page] -> [Chunk] -> vectors -> library
answer:  question -> [Hit] -> prompt -> streamed text -> Answer (with Citations)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SourceKind = Literal["arxiv", "file", "url"]


@dataclass(frozen=True)
class PaperMeta:
    """What is known about a paper before its PDF is parsed."""

    id: str  # arXiv id without version, or the local file stem
    title: str = ""
    authors: tuple[str, ...] = ()
    year: int | None = None
    abstract: str = ""
    categories: tuple[str, ...] = ()
    version: int | None = None  # arXiv version number (v2 -> 2)
    arxiv_id: str | None = None  # without version; None for non-arXiv papers
    pdf_url: str | None = None
    metadata_from: Literal["arxiv", "pdf", "reading-list"] = "pdf"


@dataclass(frozen=True)
class Paper:
    """A paper as stored in the library."""

    id: str
    title: str
    authors: tuple[str, ...]
    year: int | None
    abstract: str
    categories: tuple[str, ...]
    version: int | None
    arxiv_id: str | None
    pdf_url: str | None
    source: str  # where the PDF came from (URL or local path)
    content_hash: str  # sha256 of the PDF bytes
    pages: int
    chunks: int = 0
    metadata_from: str = "pdf"
    added_at: str = ""
    aliases: tuple[str, ...] = ()  # names a question may use for it: "BERT", "Devlin et al. 2018"
    flags: tuple[str, ...] = ()  # warnings found at ingest, e.g. "hidden-text"
    pdf_file: str = ""  # the library's own copy of the PDF, relative to the data directory

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("authors", "categories", "aliases", "flags"):
            d[name] = list(d[name])
        return d


@dataclass(frozen=True)
class Page:
    """Normalised text of one PDF page (1-based page number)."""

    paper_id: str
    number: int
    text: str


@dataclass(frozen=True)
class Chunk:
    """A passage of a paper; the unit of retrieval and citation.

    ``char_start``/``char_end`` are offsets into the text of ``page_start``
    (``char_end`` may run past it when the chunk spans pages; then it is an
    offset into the concatenation of pages ``page_start..page_end`` joined by "\\n").
    """

    paper_id: str
    ordinal: int  # position of the chunk in its paper
    text: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    section: str = ""
    is_reference: bool = False
    id: int | None = None  # stable id assigned by the library


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its scores."""

    chunk: Chunk
    paper_title: str
    paper_year: int | None
    score: float  # score used for ranking: the fused score, or the reranker's when one is set
    dense_score: float | None = None  # cosine similarity, when dense retrieval found it
    bm25_score: float | None = None
    rank: int = 0
    arxiv_id: str | None = None
    authors: tuple[str, ...] = ()
    fused_score: float | None = None  # the fused score, when a reranker replaced it in score
    pdf_url: str | None = None  # the paper's own PDF URL (links papers without an arXiv id)

    def to_dict(self) -> dict[str, Any]:
        c = self.chunk
        return {
            "chunk_id": c.id,
            "paper_id": c.paper_id,
            "title": self.paper_title,
            "year": self.paper_year,
            "page": c.page_start,
            "page_end": c.page_end,
            "section": c.section,
            "score": self.score,
            "dense_score": self.dense_score,
            "bm25_score": self.bm25_score,
            "fused_score": self.fused_score,
            "rank": self.rank,
            "is_reference": c.is_reference,
            "text": c.text,
        }


@dataclass(frozen=True)
class Citation:
    """A [n] marker in an answer, resolved to the passage the model was shown."""

    n: int
    paper_id: str
    title: str
    page: int
    text: str
    url: str | None  # arXiv abstract page, when the paper has an arXiv id
    pdf_url: str | None  # the PDF at the cited page (#page=N)
    chunk_id: int | None = None
    year: int | None = None
    authors: tuple[str, ...] = ()
    by: str = "model"  # "model": the model wrote [n]; "overlap": matched afterwards; "": not cited

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["authors"] = list(self.authors)
        return d


SupportLabel = Literal["supported", "partial", "unsupported", "uncited"]


@dataclass(frozen=True)
class Quote:
    """A sentence of a passage the model was shown: quoted evidence for a question, or the
    passage sentence an answer sentence was checked against. ``start``/``end`` are offsets
    into the passage text (``Answer.sources[n - 1].text``)."""

    n: int  # the passage's number in the prompt
    text: str
    start: int
    end: int
    paper_id: str = ""
    title: str = ""
    page: int = 0
    score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SentenceCheck:
    """One sentence of an answer with its checked support: ``supported`` (every number and
    distinctive term is in the matching sentence of a cited passage), ``partial`` (some are
    missing: ``missing`` names them), ``unsupported`` (the cited passages do not say it) or
    ``uncited``. ``note`` says why, for a tooltip."""

    text: str
    citations: list[int] = field(default_factory=list)
    support: SupportLabel = "uncited"
    missing: list[str] = field(default_factory=list)
    matches: list[Quote] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "citations": self.citations, "support": self.support,
                "missing": self.missing, "matches": [q.to_dict() for q in self.matches],
                "note": self.note}


@dataclass
class Timings:
    retrieval_ms: float = 0.0
    ttft_ms: float | None = None
    total_ms: float = 0.0
    rewrite_ms: float = 0.0


@dataclass
class Answer:
    question: str
    answer: str
    abstained: bool
    citations: list[Citation] = field(default_factory=list)  # the cited passages
    hits: list[Hit] = field(default_factory=list)
    sources: list[Citation] = field(default_factory=list)  # every passage of hits, resolved
    model: str = ""
    timings: Timings = field(default_factory=Timings)
    standalone_question: str = ""
    removed_citations: list[int] = field(default_factory=list)
    uncited_sentences: list[str] = field(default_factory=list)
    abstain_reason: str = ""  # "retrieval" | "model" | ""
    tokens: int = 0
    prompt_tokens: int = 0  # tokens of the prompt sent, as the model server counted them
    max_tokens: int = 0  # completion tokens asked for (lowered when the prompt left less room)
    raw_answer: str = ""  # the model's text exactly as generated (citation validity uses it)
    sentences: list[SentenceCheck] = field(default_factory=list)
    evidence: list[Quote] = field(default_factory=list)  # best sentences, chosen without a model
    mode: str = "generate"  # "generate": the model's answer; "extract": quoted evidence
    model_answer: str = ""  # the model's text when ``auto`` replaced it by quoted evidence
    # what was wrong with the model's text: "repetition" (the stream looped and was
    # stopped), "few-shot" / "prompt" / "question" (echo, stripped), "fragment" (a trailing
    # "The answer is:", stripped), "empty", "unsupported" (no sentence supported)
    degenerate: list[str] = field(default_factory=list)
    signal: dict[str, float] = field(default_factory=dict)  # the refusal's inputs

    def support_totals(self) -> dict[str, int]:
        labels = ("supported", "partial", "unsupported", "uncited")
        return {label: sum(s.support == label for s in self.sentences) for label in labels}

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "abstained": self.abstained,
            "abstain_reason": self.abstain_reason,
            "standalone_question": self.standalone_question,
            "citations": [c.to_dict() for c in self.citations],
            "sources": [c.to_dict() for c in self.sources],
            "hits": [h.to_dict() for h in self.hits],
            "model": self.model,
            "timings": asdict(self.timings),
            "removed_citations": self.removed_citations,
            "uncited_sentences": self.uncited_sentences,
            "tokens": self.tokens,
            "prompt_tokens": self.prompt_tokens,
            "max_tokens": self.max_tokens,
            "raw_answer": self.raw_answer,
            "sentences": [s.to_dict() for s in self.sentences],
            "support": self.support_totals(),
            "evidence": [q.to_dict() for q in self.evidence],
            "mode": self.mode,
            "model_answer": self.model_answer,
            "degenerate": self.degenerate,
            "signal": self.signal,
        }
