"""What the chat says around an answer, in the language of the question (English or
Japanese; other languages get English labels, the answer itself comes in their language),
and the badges of flagged papers (``Paper.flags``: "hidden-text")."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape

from rag import language

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "no_answer": "No answer from the library.",
        "why_retrieval": "No passage in the library is close enough to the question.",
        "why_model": "The model found no support for an answer in the passages it was given.",
        "no_citation": "This answer cites no passage: check it against the sources.",
        "removed": "{n} citation(s) to passages the model was not given were removed.",
        "searched": "Searched the library for:",
        "none_retrieved": "No passage was retrieved.",
        "none_close": "Passages retrieved (none was close enough to answer):",
        "none_cited": "The answer cites none of the passages the model was given:",
        "hidden-text": "hidden text",
        "hidden-text-title": "This PDF holds text a reader cannot see (invisible, white, "
                             "tiny or off-page): it may try to steer the assistant.",
    },
    "ja": {
        "no_answer": "ライブラリからは回答できません。",
        "why_retrieval": "質問に十分近い箇所がライブラリにありません。",
        "why_model": "与えられた箇所に回答の根拠が見つかりませんでした。",
        "no_citation": "この回答はどの箇所も引用していません。出典と照らし合わせてください。",
        "removed": "モデルに与えていない箇所への引用 {n} 件を削除しました。",
        "searched": "ライブラリの検索語:",
        "none_retrieved": "該当する箇所は見つかりませんでした。",
        "none_close": "検索された箇所(回答できるほど近いものはありません):",
        "none_cited": "回答はモデルに与えた箇所をどれも引用していません:",
        "hidden-text": "隠しテキスト",
        "hidden-text-title": "このPDFには読者に見えないテキスト(透明・白色・極小・ページ外)が"
                             "含まれています。アシスタントを操作しようとしている可能性があります。",
    },
}


def labels_for(question: str) -> dict[str, str]:
    """The labels in the question's language (English when there are none in it)."""
    return LABELS.get(language.detect(question), LABELS["en"])


def flag_badge_html(flags: Sequence[str], labels: Mapping[str, str] | None = None) -> str:
    """A badge per known flag, e.g. ``<span class='pc-flag'>hidden text</span>``."""
    words = labels or LABELS["en"]
    return "".join(f" <span class='pc-flag' title='{escape(words[f + '-title'])}'>⚠ "
                   f"{escape(words[f])}</span>" for f in flags if f in words)


_CARD_TITLE = re.compile(
    r"(<details class='pc-card'[^>]*data-paper='(?P<paper>[^']*)'[^>]*>.*?"
    r"<span class='pc-title'>.*?</span>)", re.DOTALL)


def badge_cards(html: str, flags: Mapping[str, Sequence[str]],
                labels: Mapping[str, str] | None = None) -> str:
    """Source cards (``ui.render.card_html``) of flagged papers get their badges after
    the title."""
    if not flags:
        return html

    def add(match: re.Match[str]) -> str:
        found = flags.get(_unescape_attr(match.group("paper")), ())
        return match.group(1) + flag_badge_html(found, labels)

    return _CARD_TITLE.sub(add, html)


def _unescape_attr(value: str) -> str:
    return (value.replace("&#x27;", "'").replace("&quot;", '"').replace("&gt;", ">")
            .replace("&lt;", "<").replace("&amp;", "&"))
