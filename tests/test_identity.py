"""A paper's identity cannot be taken by a name: an upload named like an arXiv paper, two
uploads of the same name, a stamped upload of a paper already held, and two PDF URLs that
differ only in their query. Real PDFs, the real pipeline and library, a real HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from core.settings import Settings
from index.library import Library
from index.open import open_library
from ingest.pipeline import ingest_items
from support.pdfmaker import make_text_pdf
from tests.helpers import CORPUS_PDFS, make_settings
from ui.library import LibraryActions

pytestmark = pytest.mark.slow  # each loads the embedding model and ingests

ZORBLAX = ("Zorblax Networks: Training Quantum Gerbil Models\n\nAbstract. The Zorblax network "
           "has 42 layers and reached 97.3 percent accuracy on the gerbil benchmark.")
QUILLON = ("Quillon Machines: Learning to Juggle\n\nAbstract. The Quillon machine juggles "
           "seven balls after 12 days of training on the juggling benchmark.")


def no_progress(*_: object, **__: object) -> None:
    pass


@pytest.fixture
def library(tmp_path: Path) -> Iterator[Library]:
    """A library holding the real Attention Is All You Need (arXiv 1706.03762)."""
    s = make_settings(tmp_path / "data")
    lib = open_library(s)
    report = ingest_items(s, lib, [str(CORPUS_PDFS / "1706.03762.pdf")])
    assert [r.status for r in report.results] == ["ingested"]
    yield lib


def upload(settings: Settings, library: Library, path: Path, name: str) -> Path:
    """What the browser's upload does: the file arrives in a temp folder under its name."""
    arrived = path.parent / "incoming" / name
    arrived.parent.mkdir(exist_ok=True)
    arrived.write_bytes(path.read_bytes())
    LibraryActions(settings, library).add_upload(str(arrived), no_progress)
    return arrived


def test_an_upload_named_like_an_arxiv_paper_does_not_become_it(library: Library,
                                                                tmp_path: Path) -> None:
    original = library.paper("1706.03762")
    assert original is not None
    fake = make_text_pdf(tmp_path / "fake.pdf", [ZORBLAX])
    for name in ("1706.03762.pdf", "1706.03762v1.pdf"):
        upload(library.settings, library, fake, name)
    after = library.paper("1706.03762")
    assert after == original, "the arXiv paper is untouched (title, hash, metadata)"
    uploaded = [p for p in library.papers() if p.id != "1706.03762"]
    assert len(uploaded) == 1, "the same file twice is one paper"
    assert uploaded[0].title.startswith("Zorblax") and uploaded[0].arxiv_id is None


def test_two_uploads_of_one_name_are_two_papers(library: Library, tmp_path: Path) -> None:
    upload(library.settings, library, make_text_pdf(tmp_path / "a.pdf", [ZORBLAX]), "notes.pdf")
    upload(library.settings, library, make_text_pdf(tmp_path / "b.pdf", [QUILLON]), "notes.pdf")
    titles = sorted(p.title for p in library.papers() if p.id != "1706.03762")
    assert [t.split(":")[0] for t in titles] == ["Quillon Machines", "Zorblax Networks"]
    stored = sorted((library.settings.data_dir / "uploads").glob("notes-*.pdf"))
    assert len(stored) == 2


def test_a_stamped_upload_of_a_held_paper_is_refused(library: Library, tmp_path: Path) -> None:
    """Its page stamp says 1706.03762 (another version): it is that paper by content, and
    it fails with one line instead of replacing the one held."""
    original = library.paper("1706.03762")
    stamped = make_text_pdf(tmp_path / "v5.pdf", [
        "arXiv:1706.03762v5 [cs.CL] 6 Dec 2017\n" + ZORBLAX])
    report = ingest_items(library.settings, library, [str(stamped)], upload=True)
    [result] = report.results
    assert result.status == "failed" and result.paper_id == "1706.03762"
    assert "already holds" in result.reason and "Remove 1706.03762 first" in result.reason
    assert library.paper("1706.03762") == original
    # From the command line, a file is trusted: the same PDF replaces it (reported).
    cli = ingest_items(library.settings, library, [str(stamped)])
    assert [r.status for r in cli.results] == ["replaced"]


class PdfByQuery(BaseHTTPRequestHandler):
    """/pdf?id=A and /pdf?id=B: two different PDFs at one path."""

    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        key = parse_qs(urlsplit(self.path).query).get("id", [""])[0]
        body = self.files.get(key)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "application/pdf")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_: object) -> None:
        pass


def test_pdf_urls_differing_in_their_query_are_two_papers(tmp_path: Path) -> None:
    PdfByQuery.files = {
        "A": make_text_pdf(tmp_path / "a.pdf", [ZORBLAX]).read_bytes(),
        "B": make_text_pdf(tmp_path / "b.pdf", [QUILLON]).read_bytes(),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), PdfByQuery)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}/pdf"
        s = make_settings(tmp_path / "data")
        lib = open_library(s)
        report = ingest_items(s, lib, [f"{base}?id=A", f"{base}?id=B"])
        assert [r.status for r in report.results] == ["ingested", "ingested"]
        titles = sorted(p.title.split(":")[0] for p in lib.papers())
        assert titles == ["Quillon Machines", "Zorblax Networks"]
        assert len(list((s.data_dir / "pdfs").glob("pdf-*.pdf"))) == 2, "two cache files"
        again = ingest_items(s, lib, [f"{base}?id=B"])
        assert [r.status for r in again.results] == ["unchanged"]
    finally:
        server.shutdown()
        server.server_close()
