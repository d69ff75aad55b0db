"""Parsing what the user typed into sources (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import SourceNotFoundError
from ingest.sources import Source, arxiv_id_from_filename, parse_arxiv_id, parse_item
from tests.helpers import CORPUS_PDFS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2106.09685", ("2106.09685", None)),
        ("2106.09685v2", ("2106.09685", 2)),
        ("arXiv:1706.03762v7", ("1706.03762", 7)),
        ("0704.0001", ("0704.0001", None)),
        ("hep-th/9901001", ("hep-th/9901001", None)),
        ("hep-th/9901001v3", ("hep-th/9901001", 3)),
        ("math.GT/0309136", ("math.GT/0309136", None)),
        ("https://arxiv.org/abs/2106.09685v2", ("2106.09685", 2)),
        ("https://arxiv.org/pdf/2106.09685", ("2106.09685", None)),
        ("https://arxiv.org/pdf/2106.09685.pdf", ("2106.09685", None)),
        ("https://arxiv.org/pdf/2106.09685v2.pdf", ("2106.09685", 2)),
        ("http://export.arxiv.org/abs/hep-th/9901001v1", ("hep-th/9901001", 1)),
        ("arxiv.org/abs/1706.03762", ("1706.03762", None)),
    ],
)
def test_parse_arxiv_id_accepts_ids_and_arxiv_urls(
    text: str, expected: tuple[str, int | None]
) -> None:
    assert parse_arxiv_id(text) == expected


@pytest.mark.parametrize(
    "text", ["abc", "1234.5678", "2106.0968", "https://example.org/abs/2106.09685",
             "https://arxiv.org/list/cs.CL", "2106.09685v0", ""],
)
def test_parse_arxiv_id_rejects_other_text(text: str) -> None:
    assert parse_arxiv_id(text) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1706.03762.pdf", ("1706.03762", None)),
        ("1706.03762v7.pdf", ("1706.03762", 7)),
        ("arXiv-2106.09685.pdf", ("2106.09685", None)),
        ("hep-th9901001.pdf", ("hep-th/9901001", None)),
        ("hep-th_9901001v2.pdf", ("hep-th/9901001", 2)),
        ("gpt1.pdf", None),
        ("notes-1706.pdf", None),
    ],
)
def test_arxiv_id_from_filename(name: str, expected: tuple[str, int | None] | None) -> None:
    assert arxiv_id_from_filename(Path("/some/dir") / name) == expected


def test_directory_expands_to_its_pdfs_sorted() -> None:
    sources = parse_item(str(CORPUS_PDFS))
    names = [s.path.name for s in sources if s.path is not None]
    assert names == sorted(p.name for p in CORPUS_PDFS.glob("*.pdf"))
    assert len(sources) == 15
    assert all(s.kind == "file" and s.raw == str(CORPUS_PDFS) for s in sources)
    lora = next(s for s in sources if s.path is not None and s.path.name == "2106.09685.pdf")
    assert (lora.arxiv_id, lora.version) == ("2106.09685", None)
    gpt1 = next(s for s in sources if s.path is not None and s.path.name == "gpt1.pdf")
    assert gpt1.arxiv_id is None


def test_directory_skips_other_files(tmp_path: Path) -> None:
    (tmp_path / "b.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "A.PDF").write_bytes(b"%PDF-1.4")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub.pdf").mkdir()
    assert [s.path.name for s in parse_item(str(tmp_path)) if s.path] == ["A.PDF", "b.pdf"]


def test_directory_without_pdfs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="holds no PDF"):
        parse_item(str(tmp_path))


def test_single_file() -> None:
    path = CORPUS_PDFS / "1706.03762.pdf"
    assert parse_item(str(path)) == [
        Source(kind="file", raw=str(path), arxiv_id="1706.03762", path=path)
    ]


def test_existing_file_named_like_an_id_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("2106.09685").write_bytes(b"%PDF-1.4")
    [source] = parse_item("2106.09685")
    assert source.kind == "file" and source.path == tmp_path / "2106.09685"


@pytest.mark.parametrize("item", ["missing.pdf", "./papers/x.pdf", "~/nope/paper.pdf", "a/b"])
def test_missing_path_says_check_the_path(item: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceNotFoundError, match="does not exist; check the path"):
        parse_item(item)


def test_arxiv_ids_and_urls_become_arxiv_sources() -> None:
    assert parse_item("2106.09685v2") == [
        Source(kind="arxiv", raw="2106.09685v2", arxiv_id="2106.09685", version=2)
    ]
    assert parse_item(" hep-th/9901001 ")[0].arxiv_id == "hep-th/9901001"
    [src] = parse_item("https://arxiv.org/pdf/1706.03762v7.pdf")
    assert (src.kind, src.arxiv_id, src.version, src.url) == ("arxiv", "1706.03762", 7, None)
    [src] = parse_item("https://arxiv.org/abs/1706.03762")
    assert (src.kind, src.arxiv_id, src.version) == ("arxiv", "1706.03762", None)


def test_other_urls_are_pdf_urls() -> None:
    url = "https://cdn.openai.com/research-covers/language-unsupervised/language_understanding_paper.pdf"
    assert parse_item(url) == [Source(kind="url", raw=url, url=url)]
    [src] = parse_item("http://example.org/download?id=7")
    assert src.kind == "url" and src.arxiv_id is None


def test_unrecognised_text_is_a_clear_error() -> None:
    with pytest.raises(SourceNotFoundError, match="not a file, an arXiv id or a URL"):
        parse_item("attention is all you need")
