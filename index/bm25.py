"""BM25 over chunk texts (bm25s), with a tokenizer that keeps numbers like "3.5" and "28.4",
spells Greek letters out ("β2" and "beta2" both give "beta", "2") and stems English words,
so "infilling" finds "Infilling" and "trained" finds "training"."""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
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
# bm25s sets its own logger to DEBUG on import, which would print on the user's terminal.
logging.getLogger("bm25s").setLevel(logging.WARNING)


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def _cjk_bigrams(word: str) -> list[str]:
    return [word[i:i + 2] for i in range(len(word) - 1)] or [word]


def tokenize(text: str) -> list[str]:
    """Lower-cased, NFKC-normalised, stemmed tokens without English stopwords."""
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
