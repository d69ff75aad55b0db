"""Which papers of the library a question names: by an alias ("BERT", "RNNsearch",
"the original GPT"), by first author ("Vaswani et al. (2017)", "Bahdanau, Cho and
Bengio"), by arXiv id or by its quoted title.

Guards against false matches, which would pull a wrong paper into every answer:
- a name followed by a version ("GPT-3" is not "GPT", "BERT-style" still is BERT);
- a plain word that a paper's abstract calls its model ("the Transformer") and that
  another paper's title uses too ("Efficient Transformers") names that paper only as "the
  original Transformer" or "the Transformer paper": other papers use the word for their
  own models;
- an alias two papers share names neither;
- an author surname counts only as an author ("Liu et al.", "Bahdanau, Cho", "Hu and",
  "Dao's"), with a year that fits the paper's when one is given.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from core.types import Paper

ARXIV_ID = re.compile(r"\b(\d{4}\.\d{4,5})(?:v\d+)?\b|\b([a-z\-]+(?:\.[A-Z]{2})?/\d{7})\b")
AUTHOR_ALIAS = re.compile(r"^(?P<surname>.+?) et al\.(?: (?P<year>\d{4}))?$")
PLAIN_WORD = re.compile(r"^[A-Z][a-z]+s?$")  # "Transformer": a word, not a coined name
AUTHOR_AFTER = r"(?:\s*,?\s*et\.?\s+al\b|\s*,\s*[A-Z]|\s+and\s+[A-Z]|\s*&|['’]s\b|\s*\(?\d{4})"
# A version after a name makes it another model ("GPT-3", "PaLM 2", "GPT-3.5"); a size
# or a setting does not ("LLaMA-13B", "Pythia 1.4B", "RNNsearch-50").
VERSION = r"[\-\s]?\d(?:\.\d+)?(?!\w|\.\d)"
YEAR_NEAR = re.compile(r"\b((?:19|20)\d{2})\b")
# "Which paper introduced X?": the answer is a paper, best shown by its title and abstract.
WHICH_PAPER = re.compile(
    r"\b(?:which|what)\s+(?:(?:earlier|later|original|first|other|one|two)\s+)?"
    r"(?:paper|work|article|publication|study|preprint|report)s?\b|"
    r"\bwho\s+(?:first\s+)?(?:introduced|proposed|presented)\b", re.IGNORECASE)
YEAR_SLACK = 1  # "Devlin et al. (2019)" cites the 2018 preprint as published in 2019


@dataclass(frozen=True)
class Alias:
    paper_id: str
    pattern: re.Pattern[str]
    weak: bool  # a plain word: names the paper only as "the original X" / "the X paper"


def asks_which_paper(query: str) -> bool:
    """Whether the query asks which paper (or work, study...) did something."""
    return WHICH_PAPER.search(query) is not None


def _name_pattern(name: str) -> re.Pattern[str]:
    """``name`` as a whole word, case-insensitive, not followed by a version number."""
    body = r"[\s\-]+".join(re.escape(part) for part in re.split(r"[\s\-]+", name))
    return re.compile(rf"(?<![\w\-]){body}(?!\w|{VERSION})", re.IGNORECASE)


def _title_norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKC", text).casefold()))


class PaperNames:
    """The names of the papers of a library; ``named(query)`` finds those a query names."""

    def __init__(self, papers: list[Paper]) -> None:
        self.papers = {p.id: p for p in papers}
        self.arxiv = {p.arxiv_id: p.id for p in papers if p.arxiv_id}
        self.titles = [(_title_norm(p.title), p.id) for p in papers
                       if len(_title_norm(p.title).split()) >= 3]
        self.aliases: list[Alias] = []
        self.authors: list[tuple[str, int | None, str]] = []  # (surname, year, paper id)
        owners: dict[str, set[str]] = {}
        for p in papers:
            for alias in p.aliases:
                m = AUTHOR_ALIAS.match(alias)
                if m:
                    year = int(m.group("year")) if m.group("year") else p.year
                    self.authors.append((m.group("surname"), year, p.id))
                else:
                    owners.setdefault(alias.casefold(), set()).add(p.id)
        in_titles: dict[str, set[str]] = {}  # word (singular) -> papers whose title has it
        for p in papers:
            for word in re.findall(r"[a-z]+", p.title.casefold()):
                in_titles.setdefault(word.removesuffix("s"), set()).add(p.id)
        for p in papers:
            for alias in p.aliases:
                if AUTHOR_ALIAS.match(alias) or len(owners[alias.casefold()]) > 1:
                    continue
                word = alias.casefold().removesuffix("s")
                weak = bool(PLAIN_WORD.match(alias)) and bool(in_titles.get(word, set()) - {p.id})
                self.aliases.append(Alias(p.id, _name_pattern(alias), weak))

    def named(self, query: str) -> list[str]:
        """Ids of the papers the query names, in the order they are first named."""
        found: dict[str, int] = {}

        def add(paper_id: str, at: int) -> None:
            found[paper_id] = min(at, found.get(paper_id, at))

        for m in ARXIV_ID.finditer(query):
            pid = self.arxiv.get(m.group(1) or m.group(2))
            if pid:
                add(pid, m.start())
        norm = _title_norm(query)
        for title, pid in self.titles:
            at = norm.find(title)
            if at >= 0:
                add(pid, at * len(query) // max(1, len(norm)))
        for alias in self.aliases:
            for m in alias.pattern.finditer(query):
                if not alias.weak or self._qualified(query, m.start(), m.end()):
                    add(alias.paper_id, m.start())
                    break
        for surname, year, pid in self.authors:
            where = self._author_at(query, surname, year)
            if where is not None:
                add(pid, where)
        return sorted(found, key=lambda pid: found[pid])

    @staticmethod
    def _qualified(query: str, start: int, end: int) -> bool:
        """"the original X", "X paper", "X's paper": a plain word used as a paper's name."""
        before, after = query[max(0, start - 12):start].lower(), query[end:end + 10].lower()
        return "original" in before or re.match(r"(?:['’]s)?\s+paper\b", after) is not None

    @staticmethod
    def _author_at(query: str, surname: str, year: int | None) -> int | None:
        m = re.search(rf"\b{re.escape(surname)}(?={AUTHOR_AFTER})", query)
        if m is None:
            return None
        near = YEAR_NEAR.search(query[m.end():m.end() + 40])
        if near and year is not None and abs(int(near.group(1)) - year) > YEAR_SLACK:
            return None
        return m.start()
