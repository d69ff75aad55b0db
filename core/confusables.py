"""Text from untrusted documents, made plain: invisible characters stripped and Latin
look-alikes (Cyrillic "о" in "Ignоre", Greek "Ι" in "Ιgnore") folded to Latin.

Both are length-preserving or simple deletions, so callers can match on a folded copy and
edit the original at the same offsets (see :func:`skeleton`).
"""

from __future__ import annotations

import re
import unicodedata

# Zero-width and bidi controls, word joiners, fillers and variation selectors: characters a
# reader never sees that split a word for a pattern ("Ig\u2060nore") or reorder a line.
_INVISIBLE_EXTRA = (
    "\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\uffa0\ufe00-\ufe0f"
    "\U000e0100-\U000e01ef"
)
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE_EXTRA}]")

# Letters of other scripts drawn like Latin ones (Unicode's confusables, the common ones).
_LOOKALIKES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x",
    "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l",
    "к": "k", "м": "m", "т": "t", "ү": "y",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "Х": "X", "У": "Y", "Ѕ": "S", "І": "I", "Ј": "J", "Ԛ": "Q",
    "Ԝ": "W", "Ү": "Y", "Ӏ": "I",
    # Greek
    "ο": "o", "ν": "v", "ι": "i", "κ": "k", "υ": "u", "ρ": "p", "χ": "x",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Armenian, and the Latin script's own IPA "ɡ"
    "օ": "o", "ո": "n", "ս": "u", "ց": "g", "Օ": "O", "ɡ": "g",
}
_FOLD = str.maketrans(_LOOKALIKES)
_WORD_RE = re.compile(r"[^\W\d_]+")
_LATIN_RE = re.compile(r"[A-Za-z]")


def is_invisible(ch: str) -> bool:
    """A format character (Unicode category Cf: zero-width spaces and joiners, bidi
    controls, the word joiner U+2060, tags) or a filler / variation selector."""
    return unicodedata.category(ch) == "Cf" or bool(_INVISIBLE_RE.match(ch))


def strip_invisible(text: str) -> str:
    """``text`` without invisible characters (see :func:`is_invisible`)."""
    return "".join(ch for ch in text if not is_invisible(ch))


def _fold_word(match: re.Match[str]) -> str:
    word = match.group(0)
    if _LATIN_RE.search(word) and any(ch in _LOOKALIKES for ch in word):
        return word.translate(_FOLD)
    return word


def fold_confusables(text: str) -> str:
    """Fold look-alike letters to Latin inside words that mix them with Latin letters
    ("Ignоre" with a Cyrillic о becomes "Ignore"); words wholly in another script (Russian,
    Greek symbols such as "ν" or "ρ") are left alone. Length-preserving."""
    return _WORD_RE.sub(_fold_word, text)


def skeleton(text: str) -> str:
    """Every look-alike folded, mixed word or not: what a pattern should match on to find
    an all-look-alike word. Same length as ``text``, so offsets carry over."""
    return text.translate(_FOLD)


def clean_untrusted(text: str) -> str:
    """NFKC, invisible characters stripped, look-alikes in Latin words folded."""
    return fold_confusables(strip_invisible(unicodedata.normalize("NFKC", text)))

