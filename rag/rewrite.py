"""Turn a follow-up or a non-English question into a standalone English retrieval query.

The model rewrites when it can; its output is checked (one line, mostly Latin script, not
too long) and otherwise a plain fallback is used: the previous question joined to the
follow-up, plus the Latin-script terms of a non-English question (model names, acronyms)."""

from __future__ import annotations

import re

from paperchat.errors import LLMError
from rag import prompts
from rag.llm import LLMClient

LATIN_TERM = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*[A-Za-z0-9]|[A-Za-z]|\d+(?:\.\d+)?")
NON_LATIN = re.compile(r"[^\x00-\x7f\u00c0-\u024f\u2000-\u206f]")


def is_english(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return not letters or sum(bool(NON_LATIN.match(c)) for c in letters) / len(letters) < 0.2


def latin_terms(text: str) -> str:
    return " ".join(LATIN_TERM.findall(text))


def needs_rewrite(question: str, history: list[tuple[str, str]]) -> bool:
    return bool(history) or not is_english(question)


def fallback_query(question: str, history: list[tuple[str, str]]) -> str:
    parts = [history[-1][0]] if history else []
    parts.append(question)
    query = " ".join(parts)
    return query if is_english(query) else latin_terms(query) or query


def valid_rewrite(text: str) -> bool:
    line = text.strip()
    return 3 <= len(line) <= 300 and "\n" not in line and is_english(line)


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
    if not valid_rewrite(candidate):
        return fallback
    extra = latin_terms(question) if not is_english(question) else ""
    return f"{candidate} {extra}".strip()
