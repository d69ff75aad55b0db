"""The optional NLI support check of citations (``eval.nli_model``).

Each answer sentence that carries citations is checked against the passages it cites: the
NLI cross-encoder scores (passage, sentence) pairs, and the sentence counts as supported when,
for at least one cited passage, the entailment label wins over the others. The label order
comes from the model's ``id2label``, found by name, never by position."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.settings import Settings
from core.text import split_sentences
from eval import metrics as m
from eval.record import EvalRecord
from eval.stats import bootstrap
from rag.citations import MARKER, expand

SETTING = "eval.nli_model (PAPERCHAT_EVAL_NLI_MODEL)"


def entailment_index(id2label: dict[int, str] | None, name: str) -> int:
    """The output index labelled entailment (by name, case-insensitive)."""
    found = [int(i) for i, label in (id2label or {}).items()
             if str(label).strip().lower().startswith("entail")]
    if len(found) != 1:
        labels = ", ".join(str(v) for v in (id2label or {}).values()) or "none"
        raise ConfigError(f"The NLI model {name!r} names no single entailment label "
                          f"(labels: {labels}).",
                          f"Set {SETTING} to an NLI cross-encoder whose config.json id2label "
                          "has an 'entailment' label.")
    return found[0]


class NliChecker:
    """An NLI cross-encoder, loaded once: does a passage entail a sentence?"""

    def __init__(self, name: str, device: str = "auto", batch_size: int = 16) -> None:
        from rag.rerank import load_cross_encoder

        self.name = name
        self.batch_size = batch_size
        self.model = load_cross_encoder(name, device, "NLI model", SETTING)
        self.entailment = entailment_index(self.model.config.id2label, name)

    def entails(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (premise, hypothesis): whether the entailment label has the top score."""
        if not pairs:
            return []
        scores = self.model.predict(list(pairs), batch_size=self.batch_size,
                                    show_progress_bar=False)
        return [bool(i == self.entailment) for i in np.argmax(np.asarray(scores), axis=1)]


def load_nli(settings: Settings) -> NliChecker | None:
    """The configured NLI checker, or None when ``eval.nli_model`` is not set."""
    name = settings.eval.nli_model
    return NliChecker(name, settings.embedding.device) if name else None


def cited_sentences(rec: EvalRecord) -> list[tuple[str, list[str]]]:
    """(sentence without markers, texts of the passages it cites) for each answer sentence
    with at least one citation that resolves; empty when the record has no cited answer."""
    if rec.status != "ok" or rec.abstained or not rec.answer:
        return []
    passages = {c.n: c.text for c in rec.citations}
    out = []
    for sentence in split_sentences(rec.answer):
        numbers = [n for mk in MARKER.finditer(sentence) for n in expand(mk.group(1))]
        texts = [passages[n] for n in dict.fromkeys(numbers) if n in passages]
        claim = re.sub(r"\s+([.,;:!?。])", r"\1", " ".join(m.strip_markers(sentence).split()))
        if texts and claim:
            out.append((claim, texts))
    return out


@dataclass
class Judged:
    id: str
    supported: list[tuple[str, bool]]  # (sentence, supported)


def judge(records: Sequence[EvalRecord], checker: NliChecker) -> list[Judged]:
    """Every cited sentence of every record, judged in one batched pass of the model."""
    per_record = [(r.id, cited_sentences(r)) for r in records]
    pairs = [(text, claim) for _, items in per_record for claim, texts in items
             for text in texts]
    verdicts = iter(checker.entails(pairs))
    out = []
    for rid, items in per_record:
        if items:
            out.append(Judged(rid, [(claim, any([next(verdicts) for _ in texts]))
                                    for claim, texts in items]))
    return out


def share(sample: Sequence[Judged]) -> float | None:
    total = sum(len(j.supported) for j in sample)
    return sum(ok for j in sample for _, ok in j.supported) / total if total else None


def nli_section(records: Sequence[EvalRecord], checker: NliChecker,
                rng: np.random.Generator) -> dict[str, Any]:
    """``nli_support`` (share of cited sentences supported, pooled over answers), its 95%
    interval (resampling questions), the number of sentences judged, the model, and the
    sentences found unsupported."""
    judged = judge(records, checker)
    return {"nli_support": share(judged), "ci95": bootstrap(judged, share, rng),
            "n": sum(len(j.supported) for j in judged), "nli_model": checker.name,
            "nli_unsupported": [{"id": j.id, "sentence": s} for j in judged
                                for s, ok in j.supported if not ok]}
