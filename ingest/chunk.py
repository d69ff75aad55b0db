"""Pages -> chunks: token-bounded passages with page span, offsets, section and a
reference-list flag.

The pages of a paper are joined with "\\n" into one text; headings found on its lines cut it
into sections; each section is split by langchain's ``RecursiveCharacterTextSplitter``,
measuring length in tokens of the embedder's tokenizer (special tokens not counted), at
sentence or paragraph ends first, then line ends, then spaces. Consecutive chunks of a
section share up to ``overlap_tokens`` of whole sentences. Chunks never cross a section
boundary but may cross pages. Chunks of the reference list (after "References" or
"Bibliography", until the next heading) that read like reference entries get
``is_reference=True``.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from langchain_text_splitters import RecursiveCharacterTextSplitter
from tokenizers import Tokenizer

from core.errors import ConfigError
from core.types import Chunk, Page

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Sentence or paragraph end; then line end, clause end, space, character.
SEPARATORS = [
    r"\n\n+|(?<=[.!?])\s+(?=[A-Z0-9(\[“\"])",
    r"\n",
    r"(?<=[;,])\s",
    r"\s",
    "",
]

_NAMED = re.compile(
    r"(?i)^(?:(?P<n>\d{1,2})\.?\s+|(?:[A-Z]|[IVX]{1,4})\.?\s+)?(abstract|introduction|related work|"
    r"background|conclusions?|discussion|acknowledge?ments?|references|bibliography)\s*:?$"
)
_APPENDIX = re.compile(
    r"^(?i:appendix|appendices|supplementary materials?|supplemental materials?)"
    r"(?:\s+[A-Z](?:\.\d{1,2})*)?[.:]?(?:\s+(?P<rest>\S.*))?$"
)
_NUMBERED = re.compile(r"^(?P<n>\d{1,2}(?:\.\d{1,2}){0,3})\.?\s+(?P<rest>\S.*)$")
_LETTERED = re.compile(r"^(?P<n>[A-Z](?:\.\d{1,2}){0,3})\.?\s+(?P<rest>\S.*)$")
_REFERENCE_NAMES = ("references", "bibliography")
_BIB_MARKS = re.compile(
    r"\b(?:19|20)\d\d[a-z]?[.),:;]|^\[\d{1,3}\]|\bIn (?:Proceedings|Advances)\b|arXiv[: ]|"
    r"\bpages \d|\bpp?\. \d|\bet al\.|\bCoRR\b|\bURL\b|\bdoi\b|\b[A-Z][\w'-]+, (?:[A-Z]\.\s?)+",
    re.MULTILINE,
)


def looks_like_bibliography(text: str) -> bool:
    """Does a passage of the reference section read like reference entries (years, "[12]",
    "In Proceedings", "Brown, T.", long comma-separated author lists) rather than figures
    or an unlabelled appendix after the references ("Attention Visualizations", 1706.03762)?"""
    return len(_BIB_MARKS.findall(text)) >= 2 or text.count(",") >= 0.2 * len(text.split())


@dataclass(frozen=True)
class Section:
    """A heading found in a paper's text: where it starts and what follows it."""

    start: int  # offset of the heading line in the "\n"-joined text of all pages
    title: str  # the heading line, e.g. "3.2 Attention"; "" for the text before any heading
    is_reference: bool  # the reference list (until the next heading)


def _plausible_title(rest: str, commas: int) -> bool:
    words = rest.split()
    letters = sum(ch.isalpha() for ch in rest)
    return (
        rest[:1].isupper()
        and len(words) <= 12
        and not rest.endswith((".", ",", ";"))
        and not words[-1].isdigit()  # "1 Introduction 3": a table of contents
        and rest.count(",") <= commas
        and "=" not in rest
        and letters >= 0.6 * len(rest.replace(" ", ""))
    )


def _is_successor(prev: tuple[int, ...], cur: tuple[int, ...]) -> bool:
    """May heading number ``cur`` follow ``prev``? Allows one missed heading (3.1 -> 3.3,
    3.2 -> 4.1) so that one heading lost by the extractor does not stop detection."""
    if not prev:
        return cur in ((1,), (2,))
    if len(cur) == len(prev) + 1 and cur[:-1] == prev and cur[-1] in (1, 2):
        return True
    for j in range(min(len(prev), len(cur))):
        if cur[:j] != prev[:j] or not 1 <= cur[j] - prev[j] <= 2:
            continue
        if len(cur) == j + 1 or (len(cur) == j + 2 and cur[j + 1] == 1):
            return True
    return False


def _number(label: str) -> tuple[int, ...]:
    head, *rest = label.split(".")
    first = ord(head) - ord("A") + 1 if head.isalpha() else int(head)
    return (first, *(int(r) for r in rest))


def _lines(text: str) -> list[tuple[int, str]]:
    """(offset, stripped line) for each line of ``text``."""
    out, start = [], 0
    for line in text.split("\n"):
        out.append((start, line.strip()))
        start += len(line) + 1
    return out


def find_sections(text: str) -> list[Section]:
    """Headings in a paper's text, in order, starting with an untitled front section:
    named ones (Abstract, Introduction, References, ...), numbered ones that follow the
    previous number ("3.2 Attention" after "3.1 ..."), "Appendix ..." and, after the
    references or an appendix heading, lettered ones ("A Additional results").
    A line continued by a lower-case line (a list item, a wrapped sentence) is no heading."""
    sections = [Section(0, "", False)]
    last: dict[str, tuple[int, ...]] = {"numbered": (), "lettered": ()}
    appendix_zone, prev = False, ""
    lines = _lines(text)
    for i, (start, line) in enumerate(lines):
        after = next((nxt for _, nxt in lines[i + 1 : i + 3] if nxt), "")
        wrapped = prev[-1:].islower() or prev.endswith(",")  # ``line`` may continue ``prev``
        prev = line or prev
        kind, number = _classify(line, last, appendix_zone, wrapped)
        if kind is None or (kind != "named" and after[:1].islower()):
            continue
        if number:
            last["lettered" if kind == "lettered" else "numbered"] = number
        is_reference = kind == "named" and line.lower().rstrip(": ").endswith(_REFERENCE_NAMES)
        appendix_zone = appendix_zone or is_reference or kind in ("appendix", "lettered")
        sections.append(Section(start, line, is_reference))
        prev = ""
    return sections


def _classify(line: str, last: dict[str, tuple[int, ...]], appendix_zone: bool,
              wrapped: bool) -> tuple[str | None, tuple[int, ...]]:
    """(kind of heading or None, its number or ())."""
    if not line or len(line) > 100:
        return None, ()
    if m := _NAMED.match(line):
        return "named", _number(m.group("n")) if m.group("n") else ()
    m = _APPENDIX.match(line) if not wrapped and not line.endswith(".") else None
    if m and (m.group("rest") is None or _plausible_title(m.group("rest"), commas=0)):
        return "appendix", ()
    m = _NUMBERED.match(line)
    if m and _plausible_title(m.group("rest"), commas=2):
        number = _number(m.group("n"))
        if _is_successor(last["numbered"], number):
            return "numbered", number
    m = _LETTERED.match(line) if appendix_zone else None
    if m and _plausible_title(m.group("rest"), commas=0) and ("." in m.group("n") or not wrapped):
        number = _number(m.group("n"))
        if _is_successor(last["lettered"], number):
            return "lettered", number
    return None, ()


class Chunker:
    """Splits a paper's pages into chunks of at most ``chunk_tokens`` tokens of
    ``tokenizer`` (the embedder's, e.g. ``SentenceTransformer(...).tokenizer``). Create one
    per process and reuse it; ``chunk`` is not meant to be called from two threads at once
    (it memoises token counts per paper)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, chunk_tokens: int,
                 overlap_tokens: int) -> None:
        if chunk_tokens < 16 or not 0 <= overlap_tokens < chunk_tokens // 2:
            raise ConfigError(
                f"Invalid chunking: chunk_tokens={chunk_tokens}, overlap_tokens="
                f"{overlap_tokens}.", "Use chunk_tokens >= 16 and 0 <= overlap < chunk/2."
            )
        self.tokenizer = tokenizer
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self._backend = _private_backend(tokenizer)
        self._counts: dict[str, int] = {}  # token counts of the paper being chunked
        self._splitter = RecursiveCharacterTextSplitter(
            length_function=self.count_tokens, chunk_size=chunk_tokens,
            chunk_overlap=overlap_tokens, separators=SEPARATORS, is_separator_regex=True,
            keep_separator="end",
        )

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without the special ([CLS]/[SEP]) tokens (memoised: the
        splitter measures each piece several times)."""
        count = self._counts.get(text)
        if count is None:
            if self._backend is not None:
                count = len(self._backend.encode(text, add_special_tokens=False).ids)
            else:
                count = len(self.tokenizer.tokenize(text))
            self._counts[text] = count
        return count

    def chunk(self, paper_id: str, pages: list[Page]) -> list[Chunk]:
        """Chunks of the paper in reading order (``ordinal`` 0, 1, ...)."""
        self._counts.clear()
        pages = sorted(pages, key=lambda p: p.number)
        text = "\n".join(page.text for page in pages)
        page_starts = [0]
        for page in pages[:-1]:
            page_starts.append(page_starts[-1] + len(page.text) + 1)
        chunks: list[Chunk] = []
        for section, start, end in _section_spans(text):
            for offset, piece in self._split(text[start:end]):
                first = bisect.bisect_right(page_starts, start + offset) - 1
                last = bisect.bisect_right(page_starts, start + offset + len(piece) - 1) - 1
                char_start = start + offset - page_starts[first]
                chunks.append(Chunk(
                    paper_id=paper_id, ordinal=len(chunks), text=piece,
                    page_start=pages[first].number, page_end=pages[last].number,
                    char_start=char_start, char_end=char_start + len(piece),
                    section=section.title,
                    is_reference=section.is_reference and looks_like_bibliography(piece),
                ))
        return chunks

    def _split(self, text: str) -> Iterator[tuple[int, str]]:
        """(offset in ``text``, piece) for each chunk of one section. The splitter sums the
        token counts of the pieces it merges; a text never has more tokens than the sum over
        its pieces (WordPiece, BPE and SentencePiece alike), so every chunk fits."""
        cursor = 0
        for piece in self._splitter.split_text(text):
            offset = text.find(piece, cursor)
            if offset < 0:  # the splitter only strips whitespace: cannot happen
                raise AssertionError(f"chunk not found in its section: {piece[:60]!r}")
            cursor = offset + 1
            yield offset, piece


def _private_backend(tokenizer: PreTrainedTokenizerBase) -> Tokenizer | None:
    """A copy of a fast tokenizer's Rust backend with truncation and padding off (the
    shared one keeps whatever truncation the embedder last asked for, which would cap
    the counts), or None for a slow tokenizer."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    copy: Tokenizer = Tokenizer.from_str(backend.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def _section_spans(text: str) -> Iterator[tuple[Section, int, int]]:
    """(section, start, end) for each section with a body; a heading directly followed by
    another ("3 Model" then "3.1 Encoder") is kept with the next section's text."""
    sections = find_sections(text)
    start = 0
    for i, section in enumerate(sections):
        end = sections[i + 1].start if i + 1 < len(sections) else len(text)
        body = text[section.start : end]
        if i + 1 < len(sections) and not body.partition("\n")[2].strip():
            continue  # heading only: its line joins the next section's first chunk
        if text[start:end].strip():
            yield section, start, end
        start = end
