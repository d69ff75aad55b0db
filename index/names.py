"""The names a question may use for a paper (its aliases), derived from its metadata and the
text of its first pages, with no model and no network.

- the name before the colon of its title ("BERT: Pre-training ..." -> "BERT"), or a short
  name in parentheses at its end ("... Finetuning (BLOOMZ)");
- names its abstract or introduction gives its own work ("a new language representation
  model called BERT", "which we call Pathways Language Model (PaLM)", "We propose
  Low-Rank Adaptation, or LoRA", "We call the resulting models InstructGPT") and the name
  it gives its proposed model anywhere ("the proposed model, to which we refer as
  RNNsearch");
- its first author and year ("Vaswani et al. 2017"), the author from the metadata or else
  from the author line under the title on page 1;
- short names given by the caller (the reading list's).

Pure functions over strings; ``rag.names`` decides when a question names a paper.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

FRONT_CHARS = 8000  # the abstract and the start of the introduction
NAME = r"[A-Z][\w\-–]*(?:[ \-–][A-Z][\w\-–]*){0,3}"  # one to four capitalised words
ACRONYM = r"[A-Z][A-Za-z0-9\-]*[A-Z][A-Za-z0-9\-]*"  # PPO, PaLM, GPT-2 (two capitals)
STOP_NAMES = frozenset({
    "We", "The", "This", "These", "It", "In", "Our", "A", "An", "Table", "Figure", "Fig",
    "Section", "Appendix", "Eq", "Equation", "Algorithm", "I", "Its", "Their", "They",
})
# A name followed by a citation is someone else's ("called RNN Encoder-Decoder, proposed by
# Cho et al.", "we introduce Linformer (Wang et al., 2020)").
CITED_AFTER = re.compile(r"^\W{0,3}(?:proposed by|introduced by|from|of|\(?[A-Z][\w\-]+ et al|"
                         r"\(?[A-Z][\w\-]+ and [A-Z]|\[\d|\(\d{4})")

_CALL = (r"\b(?i:we|which we|that we)\s+(?i:call|name|dub|term)\s+"
         r"(?:(?i:it|this|them|these|the resulting|our|the)\s+(?:[a-z][\w\-]*\s+){0,2})?")
_CALLED = r"\b(?i:called|named|dubbed|termed|coined)\s+"
_PROPOSE = (r"\b(?i:we)\s+(?i:propose|present|introduce|release|develop)\s+"
            r"(?:(?:(?i:an?)\s+(?:[\w\-]+\s+){0,5}?[\w\-]+,\s+)?(?i:the\s+)?)")
_PROPOSED_MODEL = (r"\b(?i:proposed|our)\s+(?:[a-z]+\s+){0,2}?"
                   r"(?i:model|method|approach|algorithm|architecture|system)s?,?\s+"
                   r"(?i:to which we refer as|which we (?:call|refer to as|name)|"
                   r"(?:we\s+)?(?:call(?:ed)?|named|dubbed))\s+")
INTRO_PATTERNS = [re.compile(p + rf"(?P<name>{NAME})(?:\s*\((?P<acr>{ACRONYM})\))?")
                  for p in (_CALL, _CALLED, _PROPOSE)]
# "which we call proximal policy optimization (PPO)": a lower-case phrase and its acronym.
INTRO_PHRASE = re.compile(r"\b(?i:we|which we)\s+(?i:call|name)\s+"
                          rf"(?P<phrase>[a-z][\w\-]*(?:\s+[a-z][\w\-]*){{1,4}})\s*"
                          rf"\((?P<acr>{ACRONYM})\)")
OR_NAME = re.compile(rf"{_PROPOSE}{NAME},\s+or\s+(?P<name>{NAME})\s*[,.]")
ANYWHERE = re.compile(_PROPOSED_MODEL + rf"(?P<name>{NAME})")
TITLE_PREFIX = re.compile(r"^\s*(?:The\s+)?(?P<name>[^:]{1,40}?)\s*:\s*\S")
TITLE_PAREN = re.compile(rf"\((?P<name>{ACRONYM}|[A-Z][a-z]+)\)\s*$")
SYMBOLS = re.compile(r"[∗*†‡§¶♠♣♦♥#⋆]|\b\d+\b|\S+@\S+|\{[^}]*\}?")
NAME_WORD = re.compile(r"^[A-ZÀ-Ý][\w'’\-]*\.?$")


def _clean(name: str) -> str:
    return name.strip(" \t\n-,.;:\"'“”‘’")


def title_names(title: str) -> list[str]:
    """The short name a title gives its paper: the part before the colon when it is a
    name (at most four words, capitalised), or a parenthesised name at its end."""
    out = []
    m = TITLE_PREFIX.match(title)
    if m:
        name = _clean(m.group("name"))
        words = name.split()
        if 1 <= len(words) <= 4 and name[:1].isupper() and name not in STOP_NAMES:
            out.append(name)
    m = TITLE_PAREN.search(title)
    if m:
        out.append(m.group("name"))
    return out


def _initials_match(phrase: str, acronym: str) -> bool:
    letters = "".join(w[0] for w in re.split(r"[\s\-]+", phrase) if w).lower()
    return letters == re.sub(r"[^A-Za-z]", "", acronym).lower()


def _keep(name: str, after: str) -> bool:
    name = _clean(name)
    return (len(name) >= 2 and name not in STOP_NAMES and len(name) <= 40
            and name.split()[0] not in STOP_NAMES and not CITED_AFTER.match(after))


def introduced_names(front: str, body: str = "") -> list[str]:
    """Names a paper gives its own work: in its abstract and introduction (``front``), and
    the name of its proposed model anywhere (``body``)."""
    found: list[str] = []
    text = " ".join(front.split())
    for pattern in INTRO_PATTERNS:
        for m in pattern.finditer(text):
            if _keep(m.group("name"), text[m.end("name"):m.end("name") + 30]):
                found.append(_clean(m.group("name")))
                if m.group("acr"):
                    found.append(m.group("acr"))
    for m in INTRO_PHRASE.finditer(text):
        if _initials_match(m.group("phrase"), m.group("acr")):
            found.extend([m.group("acr"), m.group("phrase")])
    for m in OR_NAME.finditer(text):
        if _keep(m.group("name"), ""):
            found.append(_clean(m.group("name")))
    flat = " ".join(body.split())
    for m in ANYWHERE.finditer(flat):
        if _keep(m.group("name"), flat[m.end("name"):m.end("name") + 30]):
            found.append(_clean(m.group("name")))
    return found


def _norm_words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKC", text).casefold()))


def author_line(front: str, title: str) -> str | None:
    """The first line under the title on page 1 (where the authors are listed)."""
    want = _norm_words(title)
    if not want:
        return None
    lines = [line.strip() for line in front.splitlines()[:40]]
    for start in range(min(12, len(lines))):
        acc = ""
        for j in range(start, min(start + 5, len(lines))):
            acc = f"{acc} {_norm_words(lines[j])}".strip()
            if acc == want:
                rest = [ln for ln in lines[j + 1:j + 8] if ln and _norm_words(ln) != want]
                return rest[0] if rest else None
            if not want.startswith(acc):
                break
    return None


def surname(author: str) -> str | None:
    """The family name of a written name: "Ashish Vaswani" -> "Vaswani",
    "Aidan N. Gomez" -> "Gomez"; None when it does not look like a name."""
    words = [w for w in author.replace(",", " ").split() if w]
    if not 1 <= len(words) <= 4 or not all(NAME_WORD.match(w) for w in words):
        return None
    last = words[-1].rstrip(".")
    return last if len(last) >= 2 and last not in STOP_NAMES else None


def first_author(front: str, title: str) -> str | None:
    """The first author's written name, read from the author line under the title."""
    line = author_line(front, title)
    if line is None:
        return None
    parts = [p.strip() for p in re.split(r",|\band\b|\s{2,}", SYMBOLS.sub(",", line))]
    first = next((p for p in parts if p), "")
    words = first.split()
    if len(words) > 3:  # names separated by spaces only: "Jacob Devlin Ming-Wei Chang ..."
        words = words[:3] if words[1].endswith(".") and len(words[1]) <= 3 else words[:2]
    name = " ".join(words)
    return name if surname(name) else None


def author_alias(authors: Iterable[str], year: int | None, front: str,
                 title: str) -> str | None:
    """"Surname et al. YEAR" of the first author (from the metadata, else page 1)."""
    names = [a for a in authors if a.strip()]
    first = surname(names[0]) if names else None
    if first is None:
        written = first_author(front, title)
        first = surname(written) if written else None
    if first is None:
        return None
    return f"{first} et al. {year}" if year else f"{first} et al."


def derive_aliases(title: str, abstract: str, authors: Iterable[str], year: int | None,
                   text: str, short_names: Iterable[str] = ()) -> tuple[str, ...]:
    """Every alias of a paper, without duplicates (case-insensitive), in a stable order:
    short names, title names, introduced names, author + year. ``text`` is the paper's
    text (its first pages at least)."""
    front = f"{abstract}\n{text[:FRONT_CHARS]}" if abstract else text[:FRONT_CHARS]
    names = [*short_names, *title_names(title), *introduced_names(front, text)]
    author = author_alias(authors, year, text[:FRONT_CHARS], title)
    if author:
        names.append(author)
    seen: set[str] = set()
    out = []
    for name in names:
        key = name.casefold()
        if name and key not in seen and key != title.casefold():
            seen.add(key)
            out.append(name)
    return tuple(out)
