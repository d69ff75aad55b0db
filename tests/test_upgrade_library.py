"""Aliases and sentence rows through the real ingest and `paperchat reindex` of one paper of
the shared corpus: ingest stores both; a library from before them (no aliases, no
sentences file) gets them from `reindex` without a download, with rows for exactly the new
chunks."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from core.settings import Settings
from index.open import open_library
from paperchat.cli import main
from tests.helpers import CORPUS_PDFS, ingest_into, make_settings

PAPER = "1707.06347"


def sentence_keys(data_dir: Path) -> set[bytes]:
    with sqlite3.connect(data_dir / "sentences.sqlite") as db:
        return {r[0] for r in db.execute("SELECT key FROM chunk_sentences")}


def chunk_keys(settings: Settings) -> set[bytes]:
    library = open_library(settings)
    store = library.sentence_store()
    keys = {store.key(c.text) for p in library.papers() for c in library.chunks_of(p.id)}
    library.close()
    return keys


def aliases(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["--data-dir", str(data_dir), "list", "--json"]) == 0
    found: list[str] = json.loads(capsys.readouterr().out)[0]["aliases"]
    return found


@pytest.mark.slow
def test_ingest_stores_aliases_and_reindex_upgrades_an_older_library(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path / "data")
    assert ingest_into(settings, [str(CORPUS_PDFS / f"{PAPER}.pdf")]) == 0
    assert {"PPO", "Schulman et al. 2017"} <= set(aliases(settings.data_dir, capsys))
    assert sentence_keys(settings.data_dir) == chunk_keys(settings)

    # a library from before this change: no aliases, no sentences file
    with sqlite3.connect(settings.data_dir / "library.sqlite") as db:
        db.execute("UPDATE papers SET aliases = '[]'")
    (settings.data_dir / "sentences.sqlite").unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{settings.data_dir / 'sentences.sqlite'}{suffix}").unlink(missing_ok=True)
    assert aliases(settings.data_dir, capsys) == []

    config = tmp_path / "smaller.toml"
    config.write_text("[chunking]\nchunk_tokens = 128\noverlap_tokens = 24\n")
    assert main(["--data-dir", str(settings.data_dir), "--config", str(config),
                 "reindex"]) == 0
    capsys.readouterr()
    smaller = make_settings(settings.data_dir, chunking={"chunk_tokens": 128,
                                                         "overlap_tokens": 24})
    assert {"PPO", "Schulman et al. 2017"} <= set(aliases(settings.data_dir, capsys))
    assert sentence_keys(settings.data_dir) == chunk_keys(smaller)  # no row missing or stale
