"""The library's own PDF copies (index/pdfstore.py): content-addressed, written durably,
found only inside the store (no traversal, no symbolic link out), adopted from the download
cache for papers stored before copies were kept, removed with their paper."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import LibraryError
from core.types import Paper
from index.pdfstore import STORE, PdfStore
from tests.helpers import CORPUS_PDFS

PDF = CORPUS_PDFS / "gpt1.pdf"
HASH = hashlib.sha256(PDF.read_bytes()).hexdigest()


def paper(**fields: object) -> Paper:
    base = Paper(id="gpt1", title="GPT", authors=(), year=2018, abstract="", categories=(),
                 version=None, arxiv_id=None, pdf_url=None, source=str(PDF),
                 content_hash=HASH, pages=12)
    return replace(base, **fields)  # type: ignore[arg-type]


def test_a_copy_is_named_by_its_hash_and_outlives_the_source(tmp_path: Path) -> None:
    store = PdfStore(tmp_path / "data")
    source = tmp_path / "elsewhere" / "my paper.pdf"
    source.parent.mkdir()
    shutil.copy(PDF, source)
    name = store.add(source, HASH)
    assert name == f"{STORE}/{HASH}.pdf"
    source.unlink()  # the user's file may go: the library keeps its copy
    path = store.path_of(name)
    assert path is not None and path.read_bytes() == PDF.read_bytes()
    assert store.add(PDF, HASH) == name  # the same bytes again: the same copy
    assert [p.name for p in store.root.iterdir()] == [f"{HASH}.pdf"]  # no temporary left


def test_a_download_in_the_data_dir_is_linked_not_copied(tmp_path: Path) -> None:
    data = tmp_path / "data"
    download = data / "pdfs" / "gpt1.pdf"
    download.parent.mkdir(parents=True)
    shutil.copy(PDF, download)
    path = PdfStore(data).path_of(PdfStore(data).add(download, HASH))
    assert path is not None and path.stat().st_ino == download.stat().st_ino


@pytest.mark.parametrize("name", [
    "", "../gpt1.pdf", f"{STORE}/../library.sqlite", f"{STORE}/{HASH}.txt", "/etc/passwd",
    f"/{STORE}/{HASH}.pdf", f"{STORE}/sub/{HASH}.pdf", f"{STORE}/..%2f{HASH}.pdf",
    f"{STORE}/{HASH[:-1]}.pdf", f"{STORE}/{HASH.upper()}.pdf", f"pdfs/{HASH}.pdf",
])
def test_only_store_names_resolve(tmp_path: Path, name: str) -> None:
    store = PdfStore(tmp_path / "data")
    store.add(PDF, HASH)
    (tmp_path / "data" / "pdfs").mkdir()
    shutil.copy(PDF, tmp_path / "data" / "pdfs" / f"{HASH}.pdf")
    assert store.path_of(name) is None


def test_a_symbolic_link_out_of_the_store_is_not_followed(tmp_path: Path) -> None:
    store = PdfStore(tmp_path / "data")
    store.root.mkdir(parents=True)
    outside = tmp_path / "secret.pdf"
    shutil.copy(PDF, outside)
    (store.root / f"{HASH}.pdf").symlink_to(outside)
    assert store.path_of(f"{STORE}/{HASH}.pdf") is None
    assert store.find(paper(pdf_file=f"{STORE}/{HASH}.pdf")) is None


def test_old_papers_are_served_from_their_download_after_a_hash_check(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = PdfStore(data)
    old = paper(id="1706.03762", version=7, source="https://arxiv.org/pdf/1706.03762v7")
    assert store.find(old) is None  # nothing cached: no viewer for it
    cached = data / "pdfs" / "1706.03762v7.pdf"
    cached.parent.mkdir(parents=True)
    shutil.copy(CORPUS_PDFS / "1706.03762.pdf", cached)  # other bytes than the paper's hash
    assert store.find(old) is None
    shutil.copy(PDF, cached)
    found = store.find(old)
    assert found is not None and found.parent == store.root.resolve()  # adopted
    cached.unlink()
    assert store.find(old) == found  # by its hash from now on
    upload = paper(id="evil", source=str(data / "uploads" / "evil.pdf"))
    store.remove(upload)
    assert store.find(upload) is None
    (data / "uploads").mkdir()
    shutil.copy(PDF, data / "uploads" / "evil.pdf")
    assert store.find(upload) is not None


def test_an_unwritable_store_is_a_library_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / STORE).write_text("a file where the folder should be")
    with pytest.raises(LibraryError, match="Cannot store a copy"):
        PdfStore(data).add(PDF, HASH)
