"""Turn a follow-up or a non-English question into a standalone English retrieval query.

The model rewrites when it can; its output is checked (one English line sharing a word with
what was asked, not an answer) and joined to a plain fallback, which is used alone when the
rewrite fails the check: the previous question joined to the follow-up, and the
Latin-script terms of a non-English question (model names, acronyms)."""

from __future__ import annotations

import re
import tomllib
import unicodedata
from functools import lru_cache
from pathlib import Path

from core.errors import LLMError
from core.text import tokenize
from rag import prompts
from rag.llm import LLMClient

# What survives from a non-English question: numbers whole with their unit, exponent,
# percent sign or range ("175B", "3D", "6.25e-5", "96%", "2.5-4.5", "1,000"), and
# Latin-script names and words ("GPT-3", "LLaMA-65B", "english_proverbs").
NUMBER = r"\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?(?:%|[A-Za-z]+)?"
LATIN_TERM = re.compile(rf"{NUMBER}(?:[-–~〜]{NUMBER})?|[A-Za-z][A-Za-z0-9_.\-]*[A-Za-z0-9%]|"
                        r"[A-Za-z]")
NON_LATIN = re.compile(r"[^\x00-\x7f\u00c0-\u024f\u2000-\u206f]")


def is_english(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return not letters or sum(bool(NON_LATIN.match(c)) for c in letters) / len(letters) < 0.2


@lru_cache(maxsize=1)
def _ja_terms() -> list[tuple[str, str]]:
    with Path(__file__).with_name("ja_terms.toml").open("rb") as fh:
        terms = tomllib.load(fh)["terms"]
    return sorted(terms.items(), key=lambda kv: -len(kv[0]))


def glossary_terms(text: str) -> list[str]:
    """English renderings of the ML terms in a Japanese text (longest matches first)."""
    out = []
    for ja, en in _ja_terms():
        if ja in text:
            out.append(en)
            text = text.replace(ja, " ")
    return out


def latin_terms(text: str) -> str:
    """The Latin-script words and the numbers of a text (NFKC: full-width digits and "％"
    become ASCII), plus English for the ML terms it has in Japanese."""
    text = unicodedata.normalize("NFKC", text)
    return " ".join([*LATIN_TERM.findall(text), *glossary_terms(text)])


def needs_rewrite(question: str, history: list[tuple[str, str]]) -> bool:
    return bool(history) or not is_english(question)


def fallback_query(question: str, history: list[tuple[str, str]]) -> str:
    parts = [history[-1][0]] if history else []
    parts.append(question)
    query = " ".join(parts)
    return query if is_english(query) else latin_terms(query) or query


NOT_A_QUERY = re.compile(r"\b(the answer|not possible|last question|i cannot|as an ai)\b", re.I)


def valid_rewrite(text: str, question: str, history: list[tuple[str, str]]) -> bool:
    """One English line that shares a content word with what the user asked and does not
    read like an answer or a complaint (small models often produce those)."""
    line = text.strip()
    if not (3 <= len(line) <= 300) or "\n" in line or not is_english(line):
        return False
    if NOT_A_QUERY.search(line):
        return False
    asked = set(tokenize(" ".join([question, *(q for q, _ in history[-2:])])))
    return bool(asked & set(tokenize(line)))


def rewrite_query(question: str, history: list[tuple[str, str]], llm: LLMClient | None,
                  max_tokens: int = 48) -> str:
    """The English retrieval query for ``question`` given earlier (question, answer) turns."""
    if not needs_rewrite(question, history):
        return question
    fallback = fallback_query(question, history)
    if llm is None:
        return fallback
    try:
        out = llm.chat(prompts.rewrite_messages(question, history), max_tokens=max_tokens,
                       temperature=0.0).strip().strip('"').splitlines()
    except LLMError:
        return fallback
    candidate = out[0].strip() if out else ""
    if not valid_rewrite(candidate, question, history):
        return fallback
    return f"{candidate} {fallback}"  # the plain terms keep retrieval safe from a poor rewrite
