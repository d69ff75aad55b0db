"""Read a question set (JSONL, format in ../shared/eval/README.md); unknown fields ignored."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import EvalError


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answer: str = ""
    must_contain_any: tuple[str, ...] = ()
    papers: tuple[str, ...] = ()
    unanswerable: bool = False


def _strings(value: Any, name: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EvalError(f"{where}: '{name}' must be a list of strings.",
                        "Fix the question file (format: ../shared/eval/README.md).")
    return tuple(value)


def parse_question(obj: Any, where: str) -> Question:
    """One question from a decoded JSON line; ``where`` names the line in errors."""
    if not isinstance(obj, dict):
        raise EvalError(f"{where}: expected a JSON object.", "Write one question object a line.")
    for name in ("id", "question"):
        value = obj.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise EvalError(f"{where}: the field '{name}' is missing or empty.",
                            "Every question needs an 'id' and a 'question'.")
    if not isinstance(obj["question"], str):
        raise EvalError(f"{where}: 'question' must be a string.", "Fix the question file.")
    answer = obj.get("answer") or ""
    if not isinstance(answer, str):
        raise EvalError(f"{where}: 'answer' must be a string.", "Fix the question file.")
    return Question(id=str(obj["id"]), question=obj["question"].strip(), answer=answer,
                    must_contain_any=_strings(obj.get("must_contain_any"), "must_contain_any",
                                              where),
                    papers=_strings(obj.get("papers"), "papers", where),
                    unanswerable=bool(obj.get("unanswerable", False)))


def load_questions(path: Path, limit: int | None = None) -> list[Question]:
    """The questions of ``path`` in file order (blank lines skipped; ids must be unique)."""
    if not path.is_file():
        raise EvalError(f"Question file {path} does not exist.",
                        "Pass the path of a JSONL question set.")
    questions: list[Question] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise EvalError(f"{where}: invalid JSON ({err.msg}).",
                                "Write one JSON object per line.") from err
            q = parse_question(obj, where)
            if q.id in seen:
                raise EvalError(f"{where}: the id {q.id!r} appears twice.",
                                "Give every question its own id.")
            seen.add(q.id)
            questions.append(q)
    if not questions:
        raise EvalError(f"Question file {path} holds no questions.", "Add questions to it.")
    return questions[:limit] if limit is not None else questions


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
