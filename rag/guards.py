"""Guards against a small model's degenerate output: a stream that loops (one sentence or
phrase over and over), text that merely echoes the prompt (its rules, its example, the
question, a passage's few-shot Q:/A: examples) and a trailing fragment ("The answer is:").

Pure functions of the text; the answerer closes the stream when :class:`LoopGuard` fires
(the server then stops generating) and strips echoed text before citations are attached.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from core.text import SENTENCE_END, f1_tokens

NGRAM = 6  # a run of this many tokens ...
NGRAM_REPEATS = 3  # ... seen this many times is a loop
MIN_REPEATED_SENTENCE = 16  # characters: shorter repeats ("Yes.") are not a loop
ECHO_OVERLAP = 0.6  # share of a sentence's word 4-grams found in prompt boilerplate
# A turn or role label: a model that writes one is continuing a few-shot example or the
# chat template, not answering.
TURN = re.compile(r"(?:^|(?<=\s))(?:Q|A|Question|Answer|Human|Assistant|User|System|Input|"
                  r"Output|Example(?:\s+\d+)?|Sources?(?:\s+\d+)?|Context|Passage)\s*:",
                  re.IGNORECASE)
LEADING_LABEL = re.compile(r"^\s*(?:A|Answer)\s*:\s*", re.IGNORECASE)
FENCE = re.compile(r"</?\s*source\b[^>]*>?", re.IGNORECASE)
DANGLING = re.compile(r"[^.!?。！？]*[:：]\s*$")


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass
class LoopGuard:
    """Watches a stream's text; :meth:`feed` returns True once it loops, and :attr:`cut` is
    where the repetition began (the text before it is kept)."""

    cut: int | None = None
    _seen: dict[str, int] = field(default_factory=dict)
    _text: str = ""
    _checked: int = 0

    def feed(self, piece: str) -> bool:
        self._text += piece
        if self.cut is None:
            self.cut = self._sentence_repeat()
        if self.cut is None:
            self.cut = ngram_repeat(self._text)
        return self.cut is not None

    def _sentence_repeat(self) -> int | None:
        """Offset of the first complete sentence that repeats an earlier one."""
        ends = [m.start() for m in SENTENCE_END.finditer(self._text)]
        start = self._checked
        for end in ends:
            if end <= start:
                continue
            raw = self._text[start:end]
            key = _norm(re.sub(r"\[[\d,\s–-]+\]", "", raw))
            offset = start + len(raw) - len(raw.lstrip())
            if len(key) >= MIN_REPEATED_SENTENCE:
                if key in self._seen:
                    return offset
                self._seen[key] = offset
            start = end
            self._checked = start
        return None


def ngram_repeat(text: str, n: int = NGRAM, repeats: int = NGRAM_REPEATS) -> int | None:
    """Offset (in ``text``) of the second occurrence of the first run of ``n`` tokens that
    occurs ``repeats`` times, or None."""
    spans = [(m.start(), m.group(0)) for m in TOKEN_SPAN.finditer(unicodedata.normalize(
        "NFKC", text).casefold())]
    seen: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(spans) - n + 1):
        gram = tuple(t for _, t in spans[i:i + n])
        where = seen.setdefault(gram, [])
        if where and i - where[-1] < n:
            continue  # overlapping with itself ("a a a a"): counted once per n tokens
        where.append(i)
        if len(where) >= repeats:
            return spans[where[1]][0]
    return None


TOKEN_SPAN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W_]+")


def _grams(text: str, n: int = 4) -> set[tuple[str, ...]]:
    toks = f1_tokens(text)
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


SOURCE_BLOCK = re.compile(r"<source\b.*?</source>", re.IGNORECASE | re.DOTALL)
EXAMPLE_SPAN = 400  # characters after a turn label in a passage taken as its example


def _copies(sentence: str, text: str) -> bool:
    grams = _grams(sentence)
    return bool(grams) and len(grams & _grams(text)) / len(grams) >= ECHO_OVERLAP


def examples_in(passages: list[str]) -> str:
    """The few-shot examples quoted in passages: the text after each turn label (Q:, A:,
    Input:, Human: ...), which a model continuing the pattern copies."""
    out: list[str] = []
    for text in passages:
        out.extend(text[m.start():m.end() + EXAMPLE_SPAN] for m in TURN.finditer(text))
    return "\n".join(out)


@dataclass
class Echo:
    """The prompt text an answer must not copy: the instructions (system prompt and
    template, without the passages), the question, and few-shot examples in passages."""

    boilerplate: str
    question: str = ""
    examples: str = ""

    @classmethod
    def of(cls, messages: list[dict[str, str]], question: str, passages: list[str]) -> Echo:
        """From the messages sent: every message with the fenced sources and the question
        taken out is boilerplate."""
        text = "\n".join(m.get("content", "") for m in messages)
        text = SOURCE_BLOCK.sub(" ", text).replace(question, " ")
        return cls(text, question, examples_in(passages))

    def copies_prompt(self, sentence: str) -> bool:
        return _copies(sentence, self.boilerplate)

    def copies_example(self, sentence: str) -> bool:
        return bool(self.examples) and _copies(sentence, self.examples)

    def restates_question(self, sentence: str) -> bool:
        """A question sentence that repeats the user's question (or asks a new one)."""
        body = sentence.strip()
        if not body.endswith(("?", "？")):
            return False
        q, s = set(f1_tokens(self.question)), set(f1_tokens(body))
        return not s or len(q & s) / len(s) >= ECHO_OVERLAP or not q


def strip_echo(text: str, echo: Echo) -> tuple[str, list[str]]:
    """The answer without echoed text, and the reasons found ("few-shot", "prompt",
    "question", "fragment"). Text from the first turn label on (Q:, Human:, Example:) is a
    continued few-shot example or template and is dropped whole; so are sentences that copy
    the instructions or the question, and a trailing fragment ending in a colon."""
    reasons: list[str] = []
    body = LEADING_LABEL.sub("", text, count=1)
    turn = TURN.search(body)
    if turn is not None:
        body = body[:turn.start()]
        reasons.append("few-shot")
    if FENCE.search(body):
        body = FENCE.sub(" ", body)
        reasons.append("prompt")
    kept: list[str] = []
    for sentence in sentences_with_space(body):
        if echo.copies_prompt(sentence):
            reasons.append("prompt")
        elif echo.copies_example(sentence):
            reasons.append("few-shot")
        elif echo.restates_question(sentence):
            reasons.append("question")
        else:
            kept.append(sentence)
    out = "".join(kept).strip()
    dangling = DANGLING.search(out)
    if dangling is not None and dangling.group(0).strip():
        out = out[:dangling.start()].rstrip()
        reasons.append("fragment")
    return out, sorted(set(reasons), key=reasons.index)


def sentences_with_space(text: str) -> list[str]:
    """The sentences of ``text`` with the space after each (joined, they give ``text``)."""
    out, pos = [], 0
    for m in SENTENCE_END.finditer(text):
        out.append(text[pos:m.end()])
        pos = m.end()
    if pos < len(text):
        out.append(text[pos:])
    return out


def is_echo_sentence(sentence: str, echo: Echo | None) -> bool:
    """Whether citation attribution must leave ``sentence`` alone (see strip_echo)."""
    if TURN.search(sentence) or FENCE.search(sentence):
        return True
    return echo is not None and (echo.copies_prompt(sentence) or echo.copies_example(sentence)
                                 or echo.restates_question(sentence))
