"""Sentence-level support check of an answer, deterministic and model-free.

Each answer sentence that cites passages is compared with the single sentence of those
passages that best matches it: the one holding most of its *items* (the names and terms it
uses: capitalised words, acronyms, model names like GPT-3; and its numbers). Names pick the
sentence the claim is about; then every number of the claim must be in that sentence, not
merely somewhere in the passage, and every name in it (or beside it: the sentence before or
after, the paper's title). Numbers are compared by value: 28.4 = 28.4%, 1e-4 = 10^-4 = 10−4,
2,500M = 2500M, eight = 8.

Labels: ``supported`` (nothing missing), ``partial`` (a name or term is missing),
``unsupported`` (a number is missing, or the passages share too little with the sentence),
``uncited`` (no [n]). A name or number the question itself gave counts when it is anywhere
in the cited passages (the reader asked about it; the claim is what the answer adds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.text import ABBREVIATION, SENTENCE_END, passage_sentences
from core.types import Citation, Quote, SentenceCheck
from rag.citations import MARKER, expand
from rag.claims import Claim, Number, Window, claim_of, number_values, terms

SUPPORT_COVERAGE = 0.5  # share of content words a sentence without items needs to be supported
MIN_COVERAGE = 0.2  # below this the matching sentence shares too little: unsupported


def _coverage(words: set[str], window: Window) -> float:
    return len(words & window.stems) / len(words) if words else 0.0


@dataclass
class Candidate:
    n: int
    start: int
    end: int
    sentence: Window
    context: Window  # the sentence, its neighbours and the paper's title

    def score(self, claim: Claim) -> float:
        found_terms = sum(self.sentence.has_term(t) for t in claim.terms)
        found_numbers = sum(self.sentence.has_number(x) for x in claim.numbers)
        return found_terms + 0.9 * found_numbers + 0.8 * _coverage(claim.words, self.sentence)


def candidates(n: int, source: Citation) -> list[Candidate]:
    text = source.text
    spans = passage_sentences(text) or [(0, len(text))]
    out = []
    for i, (a, b) in enumerate(spans):
        lo = spans[max(0, i - 1)][0]
        hi = spans[min(len(spans) - 1, i + 1)][1]
        context = f"{source.title} {source.year or ''} {text[lo:hi]}"
        out.append(Candidate(n, a, b, Window.of(text[a:b]), Window.of(context)))
    return out


def cited_numbers(sentence: str, valid: int) -> list[int]:
    out: list[int] = []
    for m in MARKER.finditer(sentence):
        out.extend(n for n in expand(m.group(1)) if 1 <= n <= valid and n not in out)
    return out


def _about(cand: Candidate, other: Window | None, claim: Claim) -> str:
    """What the matched sentence is about: the answer's names it holds, preferably those
    the other sentence (where a missing number is) lacks."""
    held = [t for t in claim.terms if cand.sentence.has_term(t)]
    distinct = [t for t in held if other is None or not other.has_term(t)]
    chosen = sorted(distinct or held, key=len, reverse=True)
    return chosen[0] if chosen else ""


def _where_else(x: Number, cands: list[Candidate], best: Candidate) -> Candidate | None:
    return next((c for c in cands if c.n == best.n and c is not best
                 and c.sentence.has_number(x)), None)


def _other_about(where: Candidate, best: Candidate) -> str:
    own = [t for t in terms(where.sentence.text) if not best.sentence.has_term(t)]
    return sorted(own, key=len, reverse=True)[0] if own else ""


def _number_note(x: Number, best: Candidate, cands: list[Candidate], claim: Claim) -> str:
    if not any(c.sentence.has_number(x) for c in cands):
        return f"{x.text} is in none of the cited passages ([{best.n}])"
    where = _where_else(x, cands, best)
    about = _about(best, where.sentence if where else None, claim)
    note = f"{x.text} is not in the sentence of [{best.n}]" + (f" about {about}" if about
                                                               else " that matches")
    if where is not None and (other := _other_about(where, best)):
        note += f" (it is in the one about {other})"
    return note


def check_sentence(sentence: str, sources: list[Citation], question: str = "") -> SentenceCheck:
    """The support of one answer sentence against the passages it cites (``sources[i]`` is
    passage [i+1], as shown to the model)."""
    cited = cited_numbers(sentence, len(sources))
    check = SentenceCheck(text=sentence, citations=cited)
    if not cited:
        return check
    claim = claim_of(sentence)
    cands = [c for n in cited for c in candidates(n, sources[n - 1])]
    if not cands:
        check.support, check.note = "unsupported", "the cited passages are empty"
        return check
    best_per: dict[int, Candidate] = {}
    for c in sorted(cands, key=lambda c: -c.score(claim)):
        best_per.setdefault(c.n, c)
    matched = sorted(best_per.values(), key=lambda c: -c.score(claim))[:2]
    if len(cited) == 1 or matched[1].score(claim) <= 0:
        matched = matched[:1]
    check.matches = [Quote(n=c.n, text=sources[c.n - 1].text[c.start:c.end], start=c.start,
                           end=c.end, paper_id=sources[c.n - 1].paper_id,
                           title=sources[c.n - 1].title, page=sources[c.n - 1].page,
                           score=round(c.score(claim), 3)) for c in matched]
    _label(check, claim, matched, cands, question, sources)
    return check


def _label(check: SentenceCheck, claim: Claim, matched: list[Candidate],
           cands: list[Candidate], question: str, sources: list[Citation]) -> None:
    given = Window.of(question) if question else None
    passages = Window.of(" ".join(f"{sources[n - 1].title} {sources[n - 1].text}"
                                  for n in check.citations))
    notes: list[str] = []
    missing_numbers = []
    for x in claim.numbers:
        if any(c.sentence.has_number(x) or _is_metadata(x, sources[c.n - 1])
               for c in matched):
            continue
        if given is not None and given.has_number(x) and passages.has_number(x):
            continue
        missing_numbers.append(x)
        notes.append(_number_note(x, matched[0], cands, claim))
    missing_terms = [t for t in claim.terms
                     if not any(c.context.has_term(t) for c in matched)
                     and not (given is not None and given.has_term(t) and passages.has_term(t))]
    if missing_terms:
        notes.append(f"{', '.join(missing_terms)} not in the matching sentence of "
                     f"[{matched[0].n}]")
    check.missing = [x.text for x in missing_numbers] + missing_terms
    coverage = max(_coverage(claim.words, c.sentence) for c in matched)
    if missing_numbers:
        check.support = "unsupported"
    elif not claim.numbers and not claim.terms:
        check.support = "supported" if coverage >= SUPPORT_COVERAGE else "unsupported"
        if check.support == "unsupported":
            notes.append("the cited passages do not say this" if len(check.citations) > 1
                         else "the cited passage does not say this")
    elif missing_terms:
        found = len(claim.terms) - len(missing_terms) + len(claim.numbers)
        check.support = "partial" if found and coverage >= MIN_COVERAGE else "unsupported"
    else:
        check.support = "supported" if coverage >= MIN_COVERAGE or not claim.words \
            else "partial"
        if check.support == "partial":
            notes.append(f"[{matched[0].n}] shares few words with this sentence")
    check.note = "; ".join(notes)


def _is_metadata(x: Number, source: Citation) -> bool:
    """A number that is the paper's year or in its title (e.g. "(2017)" after a title)."""
    return bool(x.values & number_values(f"{source.title} {source.year or ''}"))


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the answer's sentences: split after . ! ? but not after an
    abbreviation ("e.g.", "et al."); a piece without a letter (a lone "[1].") joins the
    sentence before."""
    spans: list[tuple[int, int]] = []
    start = 0
    ends = [m for m in SENTENCE_END.finditer(text)
            if not ABBREVIATION.search(text, max(0, m.start() - 8), m.start())]
    for m in [*ends, None]:
        end = m.start() if m is not None else len(text)
        piece = text[start:end]
        if piece.strip():
            a = start + len(piece) - len(piece.lstrip())
            b = start + len(piece.rstrip())
            if spans and not re.search(r"[^\W\d_]", MARKER.sub(" ", piece)):
                spans[-1] = (spans[-1][0], b)
            else:
                spans.append((a, b))
        if m is not None:
            start = m.end()
    return spans


def check_answer(answer: str, sources: list[Citation], question: str = "") -> list[SentenceCheck]:
    """Every sentence of ``answer`` with its support (see the module's docstring)."""
    return [check_sentence(answer[a:b], sources, question) for a, b in sentence_spans(answer)]


def attribute_by_support(text: str, sources: list[Citation], question: str = "") -> tuple[
        str, list[int]]:
    """Give an uncited sentence that states a number or a name the [n] of the first shown
    passage whose matching sentence supports it fully (every number and name in one
    sentence, see :func:`check_sentence`); the numbers added are returned. Stricter than
    word overlap: a small model often states a passage's figure without citing it."""
    added: list[int] = []
    out, pos = [], 0
    for a, b in sentence_spans(text):
        sentence = text[a:b]
        out.append(text[pos:a])
        pos = b
        claim = claim_of(sentence)
        if cited_numbers(sentence, len(sources)) or MARKER.search(sentence) \
                or not (claim.numbers or claim.terms):
            out.append(sentence)
            continue
        for n in range(1, len(sources) + 1):
            if check_sentence(f"{sentence} [{n}]", sources, question).support == "supported":
                sentence = _with_marker(sentence, n)
                added.append(n)
                break
        out.append(sentence)
    out.append(text[pos:])
    return "".join(out), added


def _with_marker(sentence: str, n: int) -> str:
    body = sentence.rstrip()
    if body and body[-1] in ".!?。！？":
        return f"{body[:-1]} [{n}]{body[-1]}"
    return f"{body} [{n}]"
