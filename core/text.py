"""The one text module: the search tokenizer (BM25, term overlap, support checks), sentence
splitting (answers and passages), the normalisation every string comparison uses, and the
word tokens of answer F1. Pure functions; no project imports."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from bm25s.stopwords import STOPWORDS_EN

CJK_CHARS = "\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af"
TOKEN = re.compile(rf"[{CJK_CHARS}]+|\d+(?:[.,]\d+)+|[^\W_{CJK_CHARS}]+", re.UNICODE)
CJK = re.compile(rf"[{CJK_CHARS}]")
PARTS = re.compile(r"\d+|[^\W\d_]+")
STOP = frozenset(STOPWORDS_EN)
# Papers write hyperparameters as Greek letters (β2 = 0.98, λ = 0.95, ε_ls); users type names.
GREEK_NAMES = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "ζ": "zeta",
    "η": "eta", "θ": "theta", "ι": "iota", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu",
    "ξ": "xi", "ο": "omicron", "π": "pi", "ρ": "rho", "σ": "sigma", "ς": "sigma", "τ": "tau",
    "υ": "upsilon", "φ": "phi", "ϕ": "phi", "χ": "chi", "ψ": "psi", "ω": "omega",
}
GREEK = str.maketrans({ch: f" {name} " for ch, name in GREEK_NAMES.items()})
TOKENIZER_VERSION = "2"  # bump when tokenize() changes: saved BM25 files become stale

# Sentence ends in generated text (answers): after . ! ? and their CJK forms.
SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")
# In PDF text also a line break before a capital, bullet or number (headings and list items
# carry no full stop).
PASSAGE_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+|\n(?=[A-Z•\u2022\d])")
# A full stop that does not end a sentence: "e.g.", "et al.", "Fig.", an initial ("A.").
ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|et al|etc|vs|cf|Fig|Figs|Eq|Eqs|Sec|Tab|"
                          r"No|approx|resp)|(?<![\w.])[A-Z])\.$")

F1_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff66-\uff9f"
F1_TOKEN = re.compile(rf"[{F1_CJK}]|[^\W_{F1_CJK}]+")
ARTICLES = {"a", "an", "the"}


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def _cjk_bigrams(word: str) -> list[str]:
    return [word[i:i + 2] for i in range(len(word) - 1)] or [word]


def tokenize(text: str) -> list[str]:
    """Search tokens: lower-cased, NFKC-normalised, stemmed, without English stopwords;
    numbers like "3.5" and "28.4" kept whole, Greek letters spelt out, CJK as bigrams."""
    text = unicodedata.normalize("NFKC", text).lower().translate(GREEK)
    words: list[str] = []
    for tok in TOKEN.findall(text):
        if CJK.match(tok):
            words.extend(_cjk_bigrams(tok))
        elif tok[0].isdigit() and not tok.isdigit() and not tok.isalnum():
            words.append(tok.replace(",", ""))  # 3.5, 28.4, 1,000
        elif tok.isalpha():
            if tok not in STOP and len(tok) > 1:
                words.append(tok)
        else:  # digits alone, or mixed like p100, 800m, 1.4t: keep whole and parts
            words.append(tok)
            parts = PARTS.findall(tok)
            if len(parts) > 1:
                words.extend(p for p in parts if p not in STOP)
    stem = _stemmer().stemWords
    return [w if not w.isalpha() or CJK.match(w) else s
            for w, s in zip(words, stem(words), strict=True)]


def normalize(text: str) -> str:
    """NFKC, then case-folded (what every string comparison of answers uses)."""
    return unicodedata.normalize("NFKC", text).casefold()


def reflow(text: str) -> str:
    """PDF text as one paragraph: line breaks and runs of spaces become single spaces."""
    return " ".join(text.split())


def split_sentences(text: str, min_chars: int = 0) -> list[str]:
    """The sentences of generated text (stripped; those shorter than ``min_chars`` dropped)."""
    return [s.strip() for s in SENTENCE_END.split(text) if len(s.strip()) > min_chars]


def _line_break_ends_sentence(passage: str, pos: int, typical: float) -> bool:
    """Whether the line break at ``pos`` (before a capital, bullet or digit) ends a heading,
    a list item or a table row: the line before is short for this passage, or ends in a
    colon, or the next line is a bullet. Wrapped prose continues across the break."""
    line_start = passage.rfind("\n", 0, pos) + 1
    line = passage[line_start:pos].rstrip()
    nxt = passage[pos + 1:pos + 2]
    return nxt in "•\u2022" or line.endswith(":") or len(line) < 0.7 * typical


def passage_sentences(passage: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of a PDF passage, in order: split after . ! ?
    (not after abbreviations such as "e.g." or "et al."), and at line breaks that end a
    heading, list item or table row."""
    lines = sorted(len(x.strip()) for x in passage.split("\n") if x.strip())
    typical = lines[len(lines) * 3 // 4] if lines else 0.0
    spans: list[tuple[int, int]] = []
    start = 0
    for m in PASSAGE_SENTENCE.finditer(passage):
        if m.group(0).startswith("\n") and m.group(0) == "\n":
            if not _line_break_ends_sentence(passage, m.start(), typical):
                continue
        elif ABBREVIATION.search(passage, max(0, m.start() - 8), m.start()):
            continue
        if passage[start:m.start()].strip():
            spans.append((start, m.start()))
        start = m.end()
    if passage[start:].strip():
        spans.append((start, len(passage.rstrip())))
    return spans


def f1_tokens(text: str) -> list[str]:
    """Word tokens for answer F1: NFKC + case-folded, punctuation and English articles
    dropped; each CJK character is a token (Japanese has no spaces)."""
    return [t for t in F1_TOKEN.findall(normalize(text)) if t not in ARTICLES]
