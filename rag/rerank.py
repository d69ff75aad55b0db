"""Optional cross-encoder reranking of the fused candidates (``retrieval.reranker``).

The cross-encoder reads each (query, passage) pair jointly and scores it; the candidates are
reordered by that score, which replaces the fused score in ``Hit.score`` (the fused score is
kept in ``Hit.fused_score``), so the per-paper cap and the merging of adjacent passages that
follow work on the reranked order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.types import Hit
from index.embedder import pick_device, quiet_loading, torch_threads


def load_cross_encoder(name: str, device: str, what: str, setting: str) -> Any:
    """A ``sentence_transformers.CrossEncoder`` from a local folder or a Hugging Face name;
    a name that cannot be loaded raises ConfigError naming ``setting``."""
    from sentence_transformers import CrossEncoder

    path = Path(name).expanduser()
    try:
        with quiet_loading():
            return CrossEncoder(str(path) if path.is_dir() else name, device=pick_device(device))
    except (OSError, ValueError) as err:  # missing folder/repo, no config, unknown model type
        detail = " ".join(str(err).split())[:200]
        raise ConfigError(
            f"Cannot load the {what} {name!r} ({detail}).",
            f"Set {setting} to a local cross-encoder folder or a Hugging Face name reachable "
            "from this machine, or unset it.",
        ) from err


class CrossEncoderReranker:
    """Rescores (query, passage text) pairs with a cross-encoder, loaded once."""

    def __init__(self, name: str, device: str = "auto", batch_size: int = 16,
                 threads: int = 0) -> None:
        self.name = name
        self.batch_size = batch_size
        self.threads = threads  # torch threads while scoring (0: torch's default)
        self.model = load_cross_encoder(name, device, "reranker model",
                                        "retrieval.reranker (PAPERCHAT_RETRIEVAL_RERANKER)")
        if self.model.num_labels != 1:
            raise ConfigError(
                f"The reranker model {name!r} has {self.model.num_labels} output labels, "
                "not one relevance score.",
                "Set retrieval.reranker to a reranking cross-encoder (one score per pair).")

    def scores(self, query: str, texts: list[str]) -> list[float]:
        """The cross-encoder's score of each (query, text) pair (its own activation)."""
        if not texts:
            return []
        with torch_threads(self.threads):
            out = self.model.predict([(query, t) for t in texts], batch_size=self.batch_size,
                                     show_progress_bar=False)
        return [float(s) for s in out]

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """``hits`` reordered by cross-encoder score, best first (stable on ties)."""
        scores = self.scores(query, [h.chunk.text for h in hits])
        rescored = [replace(h, score=s, fused_score=h.score)
                    for h, s in zip(hits, scores, strict=True)]
        return sorted(rescored, key=lambda h: -h.score)
