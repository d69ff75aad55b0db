"""The page viewer's server side on a real library: ingest keeps a copy of each PDF (an
upload included), pages render into a bounded cache, passages are highlighted on every page
they span, and the app's routes serve only files of the library's PDF store (traversal
attempts get 404 and open nothing outside it; a password protects them like the page)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.errors import SourceNotFoundError
from core.settings import Settings
from index.library import Catalog
from ingest.pageview import NoPdfCopyError, PageView
from tests.helpers import CORPUS_PDFS, copy_library, ingest_into, make_settings
from tests.ui_helpers import running_app
from ui.uploads import content_digest, save_upload

pytestmark = pytest.mark.slow

# An upload is named by its content: "my upload.pdf" is stored as my_upload-<sha256[:8]>.pdf.
UPLOAD = f"my_upload-{content_digest(CORPUS_PDFS / 'gpt1.pdf')}"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The Transformer paper from the corpus folder and GPT-1 as an upload."""
    settings = make_settings(tmp_path_factory.mktemp("pages") / "data")
    upload = save_upload(CORPUS_PDFS / "gpt1.pdf", "my upload.pdf", settings)
    assert ingest_into(settings, [str(CORPUS_PDFS / "1706.03762.pdf"), str(upload)]) == 0
    return settings


@pytest.fixture
def view(library: Settings, tmp_path: Path) -> Iterator[PageView]:
    pages = PageView(Catalog(library), tmp_path / "cache", cache_mb=50)
    yield pages
    pages.close()


def test_ingest_keeps_a_copy_of_every_pdf(library: Settings) -> None:
    catalog = Catalog(library)
    papers = {p.id: p for p in catalog.papers()}
    assert set(papers) == {"1706.03762", UPLOAD}
    for p in papers.values():
        assert p.pdf_file == f"pdf-store/{p.content_hash}.pdf"
        assert (library.data_dir / p.pdf_file).read_bytes() == Path(p.source).read_bytes()
    upload = library.data_dir / "uploads" / f"{UPLOAD}.pdf"
    copy = library.data_dir / papers[UPLOAD].pdf_file
    assert copy.stat().st_ino == upload.stat().st_ino  # linked, not a second copy


def spanning_chunk(library: Settings) -> Any:
    chunks = Catalog(library).chunks_of("1706.03762")
    return next(c for c in chunks if c.page_end == c.page_start + 1 and not c.is_reference)


def test_a_passage_over_two_pages_is_highlighted_on_both(library: Settings,
                                                         view: PageView) -> None:
    chunk = spanning_chunk(library)
    sentence = chunk.text.index(". ") + 2
    found = view.highlight(chunk.id, None, ((sentence, sentence + 40),))
    assert found.complete and found.first_page == chunk.page_start
    assert set(found.boxes) == {chunk.page_start, chunk.page_end}
    assert set(found.strong) <= set(found.boxes) and found.strong
    for boxes in found.boxes.values():
        assert all(0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 for x0, y0, x1, y1 in boxes)
    doc = found.to_dict()
    assert doc["pages"] == 15 and set(doc["boxes"]) == {str(chunk.page_start),
                                                        str(chunk.page_end)}
    assert view.highlight(chunk.id, None, ((sentence, sentence + 40),)) is found  # cached
    with pytest.raises(SourceNotFoundError):
        view.highlight(10**9)


def test_pages_render_once_into_a_bounded_cache(library: Settings, tmp_path: Path) -> None:
    view = PageView(Catalog(library), tmp_path / "cache", cache_mb=0.6)
    try:
        first = view.page_image("1706.03762", 1, 2.0)
        assert first.read_bytes().startswith(b"\xff\xd8") and first.parent == tmp_path / "cache"
        written = first.stat().st_mtime_ns
        assert view.page_image("1706.03762", 1, 2.0) == first
        assert first.read_bytes() and first.stat().st_mtime_ns >= written
        whole = first.read_bytes()
        first.write_bytes(whole[: len(whole) // 2])  # torn by a crash: drawn again
        assert view.page_image("1706.03762", 1, 2.0).read_bytes() == whole
        for n in (2, 3, 4):
            view.page_image("1706.03762", n, 2.0)
        kept = list((tmp_path / "cache").glob("*.jpg"))
        assert sum(p.stat().st_size for p in kept) <= 0.6 * 1024 * 1024
        assert any(p.name.endswith("-p4-x2.jpg") for p in kept)  # the newest stays
        assert not first.exists()  # the oldest went
        with pytest.raises(SourceNotFoundError):
            view.page_image("1706.03762", 16, 2.0)
        with pytest.raises(SourceNotFoundError):
            view.page_image("1706.03762", 1, 7.0)
    finally:
        view.close()


def test_a_paper_stored_before_copies_were_kept(library: Settings, tmp_path: Path) -> None:
    settings = copy_library(library, tmp_path / "old")
    catalog = Catalog(settings)
    old = catalog.paper("1706.03762")
    assert old is not None
    with catalog.store.transaction() as db:  # as an older paperchat left it
        db.execute("UPDATE papers SET pdf_file = '' WHERE id = ?", (old.id,))
    (settings.data_dir / old.pdf_file).unlink()
    view = PageView(catalog, tmp_path / "cache", cache_mb=50)
    with pytest.raises(NoPdfCopyError, match="Ingest it again: paperchat ingest"):
        view.page_image(old.id, 1, 2.0)
    (settings.data_dir / "pdfs").mkdir()
    shutil.copy(CORPUS_PDFS / "1706.03762.pdf", settings.data_dir / "pdfs" / "1706.03762.pdf")
    assert view.page_image(old.id, 1, 2.0).is_file()  # its download, checked and adopted
    view.close()


def test_removing_a_paper_deletes_its_copy(library: Settings, tmp_path: Path) -> None:
    settings = copy_library(library, tmp_path / "data")
    catalog = Catalog(settings)
    paper = catalog.paper("1706.03762")
    assert paper is not None
    copy = settings.data_dir / paper.pdf_file
    with catalog.writer():
        assert catalog.remove_paper(paper.id)
    assert not copy.exists()
    assert (settings.data_dir / (catalog.paper(UPLOAD).pdf_file  # type: ignore[union-attr]
                                 )).is_file()


TRAVERSALS = [
    "pdf?paper=../../../../etc/passwd", "pdf?paper=%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "pdf?paper=/etc/passwd", "pdf?paper=..%2flibrary.sqlite", "pdf?paper=pdf-store",
    "pdf?paper=1706.03762/../../library.sqlite", "pdf/../../etc/passwd",
    "pdf/%2e%2e/%2e%2e/etc/passwd", "page?paper=../library.sqlite&n=1",
    "page?paper=/etc/passwd&n=1", "pdf?paper=secret", "pdf?paper=",
    "highlight?chunk=999999", "pdf?paper=%00",
]


@pytest.fixture(scope="module")
def app(library: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    settings = copy_library(library, tmp_path_factory.mktemp("app") / "data")
    (settings.data_dir.parent / "secret.pdf").write_text("%PDF-1.4 SECRET")
    with running_app(settings) as running:
        yield running


def test_routes_serve_the_library_copy_at_its_page(app: Any) -> None:
    with httpx.Client(base_url=app.url, timeout=60) as http:
        pdf = http.get("/paperchat/pdf", params={"paper": UPLOAD})
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content == (CORPUS_PDFS / "gpt1.pdf").read_bytes()
        assert pdf.headers["content-disposition"] == f'inline; filename="{UPLOAD}.pdf"'
        image = http.get("/paperchat/page", params={"paper": UPLOAD, "n": 2})
        assert image.status_code == 200 and image.content.startswith(b"\xff\xd8")
        assert image.headers["content-type"] == "image/jpeg"
        chunk = next(c for c in Catalog(app.settings).chunks_of(UPLOAD) if c.page_start == 2)
        boxes = http.get("/paperchat/highlight", params={"chunk": chunk.id, "strong": "0-30"})
        assert boxes.status_code == 200 and boxes.json()["boxes"]["2"]


def test_traversal_attempts_get_404_and_open_nothing_outside_the_store(app: Any) -> None:
    store = (app.settings.data_dir / "pdf-store").resolve()
    opened: list[str] = []
    watching = [True]

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if watching[0] and event == "open" and isinstance(args[0], str | bytes | Path):
            opened.append(str(args[0]))

    sys.addaudithook(audit)  # hooks stay for the process: ``watching`` turns this one off
    try:
        with httpx.Client(base_url=app.url, timeout=60) as http:
            for path in TRAVERSALS:
                reply = http.get(f"/paperchat/{path}")
                assert reply.status_code == 404, (path, reply.status_code)
                assert b"SECRET" not in reply.content and b"root:" not in reply.content
    finally:
        watching[0] = False
    code = (".py", ".pyc")  # the server reading its own code (a traceback's lines) is no data
    outside = [p for p in opened if not Path(p).resolve().is_relative_to(store)
               and not p.endswith(code) and "site-packages" not in p]
    assert not outside, outside


def test_a_symbolic_link_in_the_store_is_not_served(app: Any, tmp_path: Path) -> None:
    catalog = Catalog(app.settings)
    paper = catalog.paper(UPLOAD)
    assert paper is not None
    copy = app.settings.data_dir / paper.pdf_file
    upload = app.settings.data_dir / "uploads" / f"{UPLOAD}.pdf"  # the same file (a link)
    shutil.move(copy, tmp_path / "saved.pdf")
    shutil.move(upload, tmp_path / "upload.pdf")
    copy.symlink_to(app.settings.data_dir.parent / "secret.pdf")
    try:
        with httpx.Client(base_url=app.url, timeout=60) as http:
            for path in (f"pdf?paper={UPLOAD}", f"page?paper={UPLOAD}&n=7"):
                reply = http.get(f"/paperchat/{path}")
                assert reply.status_code == 404 and b"SECRET" not in reply.content
                assert f"holds no copy of the PDF of {UPLOAD}" in reply.text
    finally:
        copy.unlink()
        shutil.move(tmp_path / "saved.pdf", copy)
        shutil.move(tmp_path / "upload.pdf", upload)


def test_a_password_protects_the_pdfs_too(library: Settings) -> None:
    settings = library.model_copy(deep=True)
    settings.ui.auth = "ann:s3cret"
    with running_app(settings) as running, httpx.Client(base_url=running.url,
                                                          timeout=60) as http:
        assert http.get("/paperchat/pdf", params={"paper": UPLOAD}).status_code == 401
        login = http.post("/login", data={"username": "ann", "password": "s3cret"})
        assert login.status_code == 200
        assert http.get("/paperchat/pdf", params={"paper": UPLOAD}).status_code == 200
