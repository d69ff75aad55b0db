"""The ONNX embedding backend (embedding.backend = "onnx" / "onnx-int8"): exported once from
the packaged MiniLM into a folder of ours, compared with the torch backend on real passages,
and the library's record of the kind of vectors it holds."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError, LibraryMismatchError
from core.settings import Settings, load_settings
from index.embedder import SentenceTransformerEmbedder, resolve_backend
from index.library import embed_text
from index.onnx_embedder import OnnxEmbedder, require_onnxruntime
from index.open import library_vectors, make_embedder, open_library
from ingest.extract import extract_pages
from ingest.pipeline import ingest_items, make_chunker
from tests.helpers import CORPUS_PDFS, make_settings

QUERIES = ["How does BART corrupt documents during pre-training?",
           "Which tasks does the model improve on?", "text infilling with span masks"]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def passages() -> list[str]:
    """The real chunks of one paper (BART, 10 pages), as the embedder sees them."""
    settings = load_settings(environ={})
    pages = extract_pages(CORPUS_PDFS / "1910.13461.pdf", "1910.13461")
    chunks = make_chunker(settings).chunk("1910.13461", pages)
    return [embed_text("BART", c.section, c.text) for c in chunks]


@pytest.fixture(scope="module")
def torch_vectors(passages: list[str]) -> tuple[np.ndarray, np.ndarray]:
    e = SentenceTransformerEmbedder(load_settings(environ={}).embedding)
    return e.embed(passages), e.embed(QUERIES, "query")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape
    return (a * b).sum(1)


@pytest.mark.slow
def test_onnx_fp32_gives_the_torch_vectors(onnx_dir: Path, passages: list[str],
                                            torch_vectors: tuple[np.ndarray, np.ndarray]) -> None:
    e = OnnxEmbedder(load_settings(environ={}).embedding, onnx_dir)
    assert (e.backend, e.vectors, e.dim) == ("onnx", "fp32", 384)
    assert e.path.name == "model.onnx" and e.path.is_relative_to(onnx_dir)
    p, q = e.embed(passages), e.embed(QUERIES, "query")
    assert p.dtype == np.float32 and np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-4)
    assert len(passages) > 20
    assert float(cosines(p, torch_vectors[0]).min()) >= 0.99
    assert float(cosines(q, torch_vectors[1]).min()) >= 0.99
    assert e.embed([]).shape == (0, 384)


@pytest.mark.slow
def test_onnx_int8_is_close_to_torch_but_not_equal(
        onnx_dir: Path, passages: list[str],
        torch_vectors: tuple[np.ndarray, np.ndarray]) -> None:
    e = OnnxEmbedder(load_settings(environ={}).embedding, onnx_dir, int8=True)
    assert (e.backend, e.vectors, e.path.name) == ("onnx-int8", "int8", "model_int8.onnx")
    assert e.path.stat().st_size < (e.path.parent / "model.onnx").stat().st_size / 3
    cos = cosines(e.embed(passages), torch_vectors[0])
    assert float(cos.mean()) >= 0.985 and float(cos.min()) >= 0.95, (cos.mean(), cos.min())
    assert float(cos.min()) < 0.9999  # really quantised: other vectors
    # retrieval keeps torch's best passage for each query among its own top 5
    top5 = np.argsort(-(e.embed(QUERIES, "query") @ e.embed(passages).T), axis=1)[:, :5]
    best = (torch_vectors[1] @ torch_vectors[0].T).argmax(1)
    assert all(b in row for b, row in zip(best, top5, strict=True))


@pytest.mark.slow
def test_the_export_is_made_once_and_leaves_no_temporary_files(onnx_dir: Path) -> None:
    first = OnnxEmbedder(load_settings(environ={}).embedding, onnx_dir)
    stamp = first.path.stat().st_mtime_ns
    again = OnnxEmbedder(load_settings(environ={}).embedding, onnx_dir)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp
    assert sorted(f.name for f in first.path.parent.iterdir()) == ["model.onnx",
                                                                   "model_int8.onnx"]


@pytest.mark.slow
def test_an_int8_library_keeps_its_backend_and_refuses_fp32(tmp_path: Path,
                                                            onnx_dir: Path) -> None:
    def settings(backend: str) -> Settings:
        return make_settings(tmp_path / "data",
                             embedding={"backend": backend, "onnx_dir": str(onnx_dir)})

    int8 = settings("onnx-int8")
    report = ingest_items(int8, open_library(int8), [str(CORPUS_PDFS / "1910.13461.pdf")])
    assert [r.status for r in report.results] == ["ingested"]
    assert library_vectors(int8) == "int8"
    assert open_library(settings("auto")).embedder.backend == "onnx-int8"
    for backend in ("torch", "onnx"):
        with pytest.raises(LibraryMismatchError, match="holds int8 vectors"):
            open_library(settings(backend))


def test_auto_keeps_the_library_kind_and_onnx_is_cpu_only() -> None:
    assert resolve_backend("auto", "cpu", "int8") == "onnx-int8"
    assert resolve_backend("auto", "cuda", None) == "torch"
    assert resolve_backend("onnx", "cpu", None) == "onnx"
    with pytest.raises(ConfigError, match="CPU only"):
        resolve_backend("onnx-int8", "cuda", None)


def test_no_library_means_no_recorded_vectors(tmp_path: Path) -> None:
    assert library_vectors(make_settings(tmp_path)) is None


def test_onnxruntime_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match="needs onnxruntime"):
        require_onnxruntime()
    with pytest.raises(ConfigError, match="needs onnxruntime"):
        make_embedder(make_settings(tmp_path, embedding={"backend": "onnx"}))
