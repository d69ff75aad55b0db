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
import unicodedata
from dataclasses import dataclass, field

from core.text import ABBREVIATION, SENTENCE_END, passage_sentences, tokenize
from core.types import Citation, Quote, SentenceCheck
from rag.citations import MARKER, expand

SUPPORT_COVERAGE = 0.5  # share of content words a sentence without items needs to be supported
MIN_COVERAGE = 0.2  # below this the matching sentence shares too little: unsupported
SCALES = {"k": 1e3, "K": 1e3, "thousand": 1e3, "M": 1e6, "million": 1e6, "B": 1e9,
          "billion": 1e9, "T": 1e12, "trillion": 1e12}
WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
         "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "sixteen": 16, "twenty": 20,
         "hundred": 100}
MINUS = "-−–"
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
NUMBER = re.compile(
    rf"(?<![\w.])10\s*(?:\^|\*\*)\s*(?P<bare>[{MINUS}+]?\d+)"
    rf"|(?<![\w.])(?P<m>{_NUM})\s*(?:[×x·*]\s*10\s*(?:\^|\*\*)?\s*(?P<pe>[{MINUS}+]?\d+)"
    rf"|[eE](?P<e>[{MINUS}+]?\d+))?"
    rf"(?:\s*(?P<pct>%|percent\b)|\s?(?P<scale>[kKMBT]\b|thousand\b|million\b|billion\b"
    rf"|trillion\b))?"
    rf"|\b(?P<word>{'|'.join(WORDS)})\b", re.IGNORECASE)
# "Table 2", "Section 3.1", "Eq. 4": pointers into a paper, not claims.
POINTER = re.compile(r"(?:table|tab\.|figure|fig\.|section|sec\.|eq\.|equation|appendix|"
                     r"page|p\.|step|algorithm|chapter)\s*$", re.IGNORECASE)
RAW_TOKEN = re.compile(r"[^\s()\[\]{},:\"“”‘’]+")
EDGE = ".!?;'’\"“”*"
GENERIC = frozenset({"table", "figure", "section", "appendix", "source", "sources", "answer",
                     "question", "yes", "no", "however", "also", "overall", "note", "i",
                     "in", "on", "the", "a", "an", "and", "or", "for", "with", "by", "of"})


@dataclass(frozen=True)
class Number:
    """A number as written and the values it can stand for."""

    text: str
    values: frozenset[str]


@dataclass
class Claim:
    """What an answer sentence states: its numbers, names/terms and other content words."""

    numbers: list[Number] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    words: set[str] = field(default_factory=set)


def _key(value: float) -> str:
    return f"{value:.6g}"


def _exponent(text: str) -> int:
    return int(text.replace("−", "-").replace("–", "-"))


def _values(m: re.Match[str]) -> set[float]:
    """The values a number match can stand for (PDF text loses superscripts: '2.3 · 1019'
    is 2.3e19, and '10−4' is 1e-4)."""
    if m.group("word"):
        return {float(WORDS[m.group("word").lower()])}
    if m.group("bare"):
        return {10.0 ** _exponent(m.group("bare"))}
    base = float(m.group("m").replace(",", ""))
    exp = m.group("pe") or m.group("e")
    out = {base}
    if exp is not None:
        try:
            out = {base * 10.0 ** _exponent(exp)}
        except OverflowError:
            out = {base}
    scale = m.group("scale")
    if scale:
        factor = SCALES.get(scale) or SCALES.get(scale.lower()) or 1.0
        out |= {v * factor for v in out}
    return out


def _power_of_ten(text: str, pos: int, end: int) -> set[float]:
    """'10−4' (a minus right after 10) also stands for 1e-4 in PDF text."""
    tail = re.match(rf"[{MINUS}](\d)\b", text[end:end + 3])
    return {10.0 ** -int(tail.group(1))} if text[pos:end] == "10" and tail else set()


def numbers(text: str) -> list[Number]:
    """The numbers of ``text`` (not those inside names such as GPT-3 or P100, nor pointers
    such as "Table 2"), each with the values it stands for."""
    out: list[Number] = []
    skip_to = -1
    for m in NUMBER.finditer(text):
        start = m.start()
        if start < skip_to:
            continue
        before = text[max(0, start - 2):start]
        if re.search(r"[A-Za-z][-/]?$", before) and not m.group("word"):
            continue  # GPT-3, Pythia-12B, β2: part of a name
        if POINTER.search(text[max(0, start - 14):start]):
            continue
        values = _values(m)
        power = _power_of_ten(text, start, m.end()) if m.group(0) == "10" else set()
        if power:  # the exponent's digits are not a number of their own
            values |= power
            skip_to = m.end() + 2
        out.append(Number(m.group(0).strip(), frozenset(_key(v) for v in values)))
    return out


def number_values(text: str) -> set[str]:
    """Every value any number of ``text`` can stand for."""
    return {v for n in numbers(text) for v in n.values}


def squash(text: str) -> str:
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).casefold())


def terms(text: str) -> list[str]:
    """Names and terms of a sentence: capitalised words past the first word, acronyms and
    words with internal capitals or digits (GPT-3, LoRA, P100, English-to-German)."""
    out: list[str] = []
    body = MARKER.sub(" ", text)
    first = True
    for m in RAW_TOKEN.finditer(body):
        tok = m.group(0).strip(EDGE)
        tok = re.sub(r"['’]s$", "", tok)
        was_first, first = first, False
        if not re.search(r"[^\W\d_]", tok) or tok.casefold() in GENERIC:
            continue
        if NUMBER.fullmatch(tok):
            continue
        uppers = sum(ch.isupper() for ch in tok)
        has_digit = any(ch.isdigit() for ch in tok) and not tok[0].isdigit()
        inner = any(ch.isupper() for ch in tok[1:])
        capital = tok[0].isupper() and not was_first
        if (has_digit or inner or capital or uppers >= 2) and tok not in out:
            out.append(tok)
    return out


def claim_of(sentence: str) -> Claim:
    body = MARKER.sub(" ", sentence)
    nums = numbers(body)
    found_terms = terms(body)
    skip = {t for term in found_terms for t in tokenize(term)}
    skip |= {t for n in nums for t in tokenize(n.text)}
    words = {w for w in tokenize(body) if w not in skip and not w[0].isdigit()}
    return Claim(nums, found_terms, words)


@dataclass
class Window:
    """The text a claim is checked against, prepared once."""

    text: str
    values: set[str]
    squashed: set[str]
    stems: set[str]
    flat: str

    @classmethod
    def of(cls, text: str) -> Window:
        return cls(text, number_values(text),
                   {squash(m.group(0).strip(EDGE)) for m in RAW_TOKEN.finditer(text)},
                   set(tokenize(text)), squash(text))

    def has_number(self, n: Number) -> bool:
        return bool(n.values & self.values)

    def has_term(self, term: str) -> bool:
        """Whether the text names ``term``: the same token up to case, punctuation and a
        plural s (GPT3 = GPT-3); a name with digits also written apart (Pythia 12B =
        Pythia-12B); else each named part of a compound (English-to-German: English and
        German) or each stem of a word."""
        s = squash(term)
        if not s or s in self.squashed or s.rstrip("s") in self.squashed \
                or s + "s" in self.squashed:
            return True
        if "/" in term:  # ROUGE-1/2/L, EN/DE: each named alternative
            alternatives = [p for p in term.split("/") if len(p) > 1]
            return bool(alternatives) and all(self.has_term(p) for p in alternatives)
        if any(ch.isdigit() for ch in s):
            return len(s) >= 4 and s in self.flat
        parts = [p for p in re.split(r"[-/]", term) if p]
        if len(parts) > 1:
            named = [p for p in parts if len(p) > 1 and not p.islower()]
            return bool(named) and all(self.has_term(p) for p in named)
        stems = tokenize(term)
        return bool(stems) and all(p in self.stems for p in stems)


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
            notes.append(f"the cited passage{'s' if len(check.citations) > 1 else ''} "
                         "do not say this")
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
