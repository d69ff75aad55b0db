"""BM25 over chunk texts (bm25s), with the search tokenizer of ``core.text`` (numbers like
"28.4" kept whole, Greek letters spelt out, English words stemmed)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import bm25s
import numpy as np

from core.text import TOKENIZER_VERSION, tokenize

# bm25s sets its own logger to DEBUG on import, which would print on the user's terminal.
logging.getLogger("bm25s").setLevel(logging.WARNING)
__all__ = ["BM25Index", "tokenize"]


class BM25Index:
    def __init__(self) -> None:
        self.model: bm25s.BM25 | None = None
        self.ids = np.zeros(0, dtype=np.int64)
        self.vocab: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def build(self, ids: np.ndarray, texts: list[str]) -> None:
        tokens = [tokenize(t) for t in texts]
        vocab: dict[str, int] = {}
        token_ids = [[vocab.setdefault(w, len(vocab)) for w in doc] for doc in tokens]
        self.vocab = vocab
        self.ids = ids.astype(np.int64)
        if not texts:
            self.model = None
            return
        model = bm25s.BM25()
        model.index(bm25s.tokenization.Tokenized(ids=token_ids, vocab=vocab),
                    show_progress=False)
        self.model = model

    def search(self, query: str, k: int,
               allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        if self.model is None or k <= 0:
            return []
        q = [self.vocab[w] for w in tokenize(query) if w in self.vocab]
        if not q:
            return []
        scores = self.model.get_scores(q)
        if allowed is not None:
            scores = np.where(np.isin(self.ids, allowed), scores, 0.0)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self.ids[i]), float(scores[i])) for i in top if scores[i] > 0]

    def idf(self, terms: list[str]) -> dict[str, float]:
        """Inverse document frequency (BM25's, smoothed to stay positive) of each known
        token."""
        if self.model is None:
            return {}
        df = np.diff(np.asarray(self.model.scores["indptr"]))
        n = float(self.model.scores["num_docs"])
        out = {}
        for t in terms:
            tid = self.vocab.get(t)
            if tid is not None and tid < len(df):
                out[t] = float(np.log(1.0 + (n - df[tid] + 0.5) / (df[tid] + 0.5)))
        return out

    def save(self, directory: Path) -> None:
        if self.model is not None:
            self.model.save(str(directory / "bm25"), show_progress=False)
        np.save(directory / "bm25_ids.npy", self.ids)
        (directory / "bm25_vocab.json").write_text(json.dumps(self.vocab))
        (directory / "bm25_tokenizer.txt").write_text(TOKENIZER_VERSION)

    @staticmethod
    def is_current(directory: Path) -> bool:
        """Whether the BM25 files in ``directory`` were built by this tokenizer."""
        version = directory / "bm25_tokenizer.txt"
        return version.is_file() and version.read_text().strip() == TOKENIZER_VERSION

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        bi = cls()
        bi.ids = np.load(directory / "bm25_ids.npy")
        bi.vocab = json.loads((directory / "bm25_vocab.json").read_text())
        if (directory / "bm25").is_dir():
            bi.model = bm25s.BM25.load(str(directory / "bm25"), show_progress=False)
        return bi
