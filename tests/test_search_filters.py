"""`paperchat search`/`ask` filters: --paper A B (or repeated) and --year FROM-TO, through the
CLI over the library of the whole shared corpus."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.errors import UsageError
from core.settings import Settings
from paperchat.cli import main
from rag.retrieve import parse_years

QUERY = "pre-training a language model on a large text corpus"
# years the library gives the corpus papers (from the built-in reading list)
YEARS = {"1409.0473": 2014, "1706.03762": 2017, "1707.06347": 2017, "1810.04805": 2018,
         "gpt1": 2018, "1907.11692": 2019, "1910.13461": 2019, "2009.01325": 2020,
         "2009.06732": 2020, "2106.09685": 2021, "2203.02155": 2022, "2204.02311": 2022,
         "2205.14135": 2022, "2302.13971": 2023, "2304.01373": 2023}


def search(settings: Settings, capsys: pytest.CaptureFixture[str],
           *args: str) -> list[dict[str, Any]]:
    code = main(["--data-dir", str(settings.data_dir), "search", QUERY, "-k", "8", "--json",
                 *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    hits: list[dict[str, Any]] = json.loads(out)["hits"]
    return hits


def test_corpus_papers_have_the_years_the_filters_are_tested_with(
        corpus_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(corpus_settings.data_dir), "list", "--json"]) == 0
    assert {p["id"]: p["year"] for p in json.loads(capsys.readouterr().out)} == YEARS


def test_paper_takes_several_ids_after_one_flag_or_repeated(
        corpus_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    wanted = {"1810.04805", "1907.11692"}
    unfiltered = search(corpus_settings, capsys)
    assert {h["paper_id"] for h in unfiltered} - wanted, "the query must reach other papers"
    one_flag = search(corpus_settings, capsys, "--paper", "1810.04805", "1907.11692")
    repeated = search(corpus_settings, capsys, "--paper", "1810.04805", "--paper", "1907.11692")
    assert {h["paper_id"] for h in one_flag} == wanted
    assert [h["chunk_id"] for h in repeated] == [h["chunk_id"] for h in one_flag]


@pytest.mark.parametrize(("value", "years"), [
    ("2019", {2019}), ("2017-2018", {2017, 2018}), ("2022-", {2022, 2023}),
    ("-2017", {2014, 2017}), ("2019 – 2020", {2019, 2020})])
def test_year_restricts_hits_to_papers_of_those_years(
        corpus_settings: Settings, capsys: pytest.CaptureFixture[str], value: str,
        years: set[int]) -> None:
    hits = search(corpus_settings, capsys, "--year", value)
    assert hits and {h["year"] for h in hits} <= years
    assert {YEARS[h["paper_id"]] for h in hits} <= years
    assert {h["year"] for h in search(corpus_settings, capsys)} - years


def test_year_and_paper_filters_intersect(
        corpus_settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    hits = search(corpus_settings, capsys, "--paper", "1810.04805", "1907.11692",
                  "--year", "2019")
    assert hits and {h["paper_id"] for h in hits} == {"1907.11692"}
    assert search(corpus_settings, capsys, "--paper", "1810.04805", "--year", "2021-") == []


@pytest.mark.parametrize("command", ["search", "ask"])
@pytest.mark.parametrize("value", ["20x0", "2020-2017", "17", "-", "2017-2018-2019"])
def test_malformed_year_is_a_one_line_error(
        corpus_settings: Settings, capsys: pytest.CaptureFixture[str], command: str,
        value: str) -> None:
    # ask fails on the value before it contacts any model server (none is given here)
    code = main(["--data-dir", str(corpus_settings.data_dir), "--llm-url",
                 "http://127.0.0.1:9/v1", command, QUERY, f"--year={value}"])
    out, err = capsys.readouterr()
    assert code == UsageError.exit_code and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "year" in lines[0].lower()
    assert repr(value) in lines[0]


@pytest.mark.parametrize(("text", "expected"), [
    ("2020", (2020, 2020)), ("2017-2020", (2017, 2020)), (" 2019- ", (2019, 9999)),
    ("-2019", (0, 2019)), ("2017–2020", (2017, 2020))])
def test_parse_years(text: str, expected: tuple[int, int]) -> None:
    assert parse_years(text) == expected


@pytest.mark.slow
@pytest.mark.llm
def test_ask_year_restricts_the_sources(
        corpus_settings: Settings, llm_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data-dir", str(corpus_settings.data_dir), "--llm-url", llm_url, "ask",
                 "How was BERT pre-trained?", "-k", "3", "--year", "2019-2020",
                 "--paper", "1810.04805", "1907.11692", "2009.06732", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    answer = json.loads(out)
    assert answer["hits"], "the question must retrieve passages"
    assert {h["paper_id"] for h in answer["hits"]} <= {"1907.11692", "2009.06732"}
    assert all(c["paper_id"] in {"1907.11692", "2009.06732"} for c in answer["citations"])
