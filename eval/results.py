"""The output folder of a run: run.json (what was asked) and results.jsonl (one line per
question, appended and flushed as each question finishes, so a stopped run resumes)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from core.errors import EvalError
from core.fsio import atomic_write_text
from eval.record import EvalRecord
from eval.score import score_record

RESULTS = "results.jsonl"
RUN = "run.json"
SAME_RUN_KEYS = ("questions_sha256", "mode", "k", "retrieval_only", "settings_sha256")


def check_run(out: Path, run: dict[str, Any]) -> None:
    """Write run.json, or check that the folder holds a run of the same question file and
    options (resuming another configuration's results would mix two runs)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        diff = [key for key in SAME_RUN_KEYS if before.get(key) != run.get(key)]
        if diff:
            what = ", ".join("other settings" if key == "settings_sha256" else
                             f"{key}={before.get(key)!r}" for key in diff)
            raise EvalError(f"{out} holds a run made with other options ({what}).",
                            "Pass another --out, or the same question file, options and "
                            "settings.")
    elif (out / RESULTS).exists():
        raise EvalError(f"{out} holds results.jsonl but no run.json.",
                        "Pass an empty or new --out folder.")
    path.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")


def read_records(path: Path) -> tuple[list[EvalRecord], bool]:
    """The records of a results.jsonl of any version, each scored again by this code (so
    a resumed run is scored one way), and whether a line was not a record (a torn last
    line: the run was killed mid-write)."""
    records, torn = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = EvalRecord.from_json(line)
        except ValueError:
            torn = True
            continue
        rec.metrics = score_record(rec)
        records.append(rec)
    return records, torn


def load_done(out: Path) -> dict[str, EvalRecord]:
    """Records already in results.jsonl by id. Lines of failed questions and a torn last
    line are dropped, and the file is rewritten without them, so those questions run
    again."""
    path = out / RESULTS
    if not path.is_file():
        return {}
    records, dropped = read_records(path)
    done = {r.id: r for r in records if r.status != "error"}
    if dropped or len(done) < len(records):
        atomic_write_text(path, "".join(r.to_json() + "\n" for r in done.values()))
    return done


class ResultsWriter:
    """Appends one record a line and flushes it to disk at once."""

    def __init__(self, out: Path) -> None:
        self._fh = (out / RESULTS).open("a", encoding="utf-8")

    def write(self, rec: EvalRecord) -> None:
        self._fh.write(rec.to_json() + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
