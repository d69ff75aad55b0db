"""The result record of one question: a line of results.jsonl, typed.

The runner fills it, ``eval.score`` scores it, ``eval.aggregate`` and ``eval.report`` sum it
up and ``eval.results`` writes and reads it. On disk it is one JSON object a line with the
field names below (the keys results.jsonl always had) and ``version``. A line written before
``version`` existed reads as version 1: the keys it lacks take their defaults, and its
``raw_answer`` is None (the model's raw text was not kept), so the figures that need that
text are undefined for it rather than computed on the cleaned answer.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RECORD_VERSION = 2  # 2: raw_answer kept; citation figures on the model's own text


class Part(BaseModel):
    """A part of a record: unknown keys are ignored, so lines of other versions load."""

    model_config = ConfigDict(extra="ignore")


class Passage(Part):
    """A retrieved passage (``retrieved``) or one the model was shown as [rank] (``shown``)."""

    rank: int = 0
    paper_id: str
    chunk_id: int | None = None
    page: int = 0
    score: float | None = None
    dense_score: float | None = None
    bm25_score: float | None = None
    text: str = ""


class CitedPassage(Part):
    """A citation of the final answer (``core.types.Citation.to_dict``). ``by``: "model"
    (the model wrote [n]), "overlap" (paperchat attached it afterwards), "quote" (the
    answer is quoted evidence)."""

    n: int
    paper_id: str
    chunk_id: int | None = None
    title: str = ""
    page: int = 0
    text: str = ""
    url: str | None = None
    pdf_url: str | None = None
    year: int | None = None
    authors: list[str] = Field(default_factory=list)
    by: str = "model"


class CheckedSentence(Part):
    """An answer sentence with its support label (``core.types.SentenceCheck``)."""

    text: str
    citations: list[int] = Field(default_factory=list)
    support: str = "uncited"
    missing: list[str] = Field(default_factory=list)


class RecordTimings(Part):
    retrieval_ms: float | None = None
    ttft_ms: float | None = None
    total_ms: float | None = None


class Metrics(Part):
    """Per-question figures, grouped as in report.json (None: undefined for the question)."""

    retrieval: dict[str, float | None] = Field(default_factory=dict)
    answers: dict[str, float | None] = Field(default_factory=dict)
    citations: dict[str, float | None] = Field(default_factory=dict)

    def group(self, name: str) -> dict[str, float | None]:
        found: dict[str, float | None] = getattr(self, name)
        return found


class EvalRecord(Part):
    """One question's result. ``answer`` is None when no answer was made (retrieval only,
    skipped, failed); ``shown`` is None when the model saw no sources (retrieval only,
    no-retrieval); ``raw_answer`` is the model's text exactly as generated."""

    version: int = RECORD_VERSION
    id: str
    question: str
    reference: str = ""
    must_contain_any: list[str] = Field(default_factory=list)
    papers: list[str] = Field(default_factory=list)
    unanswerable: bool = False
    mode: str = "hybrid"
    k: int = 5
    status: Literal["ok", "error", "skipped"] = "ok"
    error: str | None = None
    missing_papers: list[str] = Field(default_factory=list)
    query: str | None = None
    best_dense: float | None = None
    retrieved: list[Passage] | None = None
    answer: str | None = None
    raw_answer: str | None = None
    abstained: bool | None = None
    abstain_reason: str = ""
    citations: list[CitedPassage] = Field(default_factory=list)
    shown: list[Passage] | None = None
    removed_citations: list[int] = Field(default_factory=list)
    uncited_sentences: list[str] = Field(default_factory=list)
    timings: RecordTimings = Field(default_factory=RecordTimings)
    tokens: int | None = None
    model: str | None = None
    answer_mode: str | None = None
    sentences: list[CheckedSentence] = Field(default_factory=list)
    support: dict[str, int] | None = None
    evidence: list[dict[str, Any]] = Field(default_factory=list)
    model_answer: str = ""
    degenerate: list[str] = Field(default_factory=list)
    metrics: Metrics = Field(default_factory=Metrics)

    def to_json(self) -> str:
        """One line of results.jsonl."""
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> EvalRecord:
        """A line of results.jsonl of any version (ValueError when it is not a record)."""
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        data.setdefault("version", 1)
        return cls.model_validate(data)
