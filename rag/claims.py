"""What an answer sentence claims, and whether a text names it: its numbers (compared by
value: 28.4 = 28.4%, 1e-4 = 10^-4 = 10−4, 2,500M = 2500M = 2.5B, eight = 8) and its names
and terms (capitalised words past the first, acronyms, GPT-3, English-to-German), matched
up to case, punctuation and plural. Pure functions; the support check (rag.support) and the
refusal signal (rag.evidence) use them."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from core.text import tokenize
from rag.citations import MARKER

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
