"""Arguments of `paperchat eval` (kept apart so the CLI imports nothing heavy)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_eval_arguments(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("questions", nargs="?", type=Path, help="question set (JSONL)")
    sp.add_argument("--out", type=Path, help="output folder (default: a new timestamped "
                    "folder under <data_dir>/eval/)")
    sp.add_argument("-k", type=int, default=5, help="passages retrieved per question")
    sp.add_argument("--retrieval-only", action="store_true",
                    help="score retrieval only (no model server needed)")
    sp.add_argument("--mode", choices=["hybrid", "dense", "bm25", "no-retrieval"],
                    default="hybrid", help="retrieval mode")
    sp.add_argument("--answer-mode", dest="answer_mode",
                    choices=["auto", "generate", "extract"],
                    help="how answers are made (llm.answer_mode; extract needs no model)")
    sp.add_argument("--compare", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"),
                    help="print two runs side by side with the deltas")
    sp.add_argument("--limit", type=int, help="only the first N questions")
    sp.add_argument("--seed", type=int, default=0,
                    help="seed of the bootstrap confidence intervals")
