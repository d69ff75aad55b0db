"""ArxivClient against the real HTTP stand-in for arXiv (support/arxiv_stub.py)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from core.errors import NetworkError, SourceNotFoundError
from core.settings import IngestSettings
from ingest.arxiv_api import ArxivClient
from support.arxiv_stub import ArxivStub
from tests.helpers import ARXIV_REPLIES, SHARED, free_port, make_settings

CORPUS_IDS = [
    "1409.0473", "1706.03762", "1707.06347", "1810.04805", "1907.11692", "1910.13461",
    "2009.01325", "2009.06732", "2106.09685", "2203.02155", "2204.02311", "2205.14135",
    "2302.13971", "2304.01373",
]


class FakeTime:
    """An injected clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def ingest_settings(tmp_path: Path, stub: ArxivStub, **values: object) -> IngestSettings:
    return make_settings(tmp_path, ingest={**stub.ingest_settings(), **values}).ingest


def test_metadata_is_fetched_in_batches(tmp_path: Path, arxiv_stub: ArxivStub) -> None:
    settings = ingest_settings(tmp_path, arxiv_stub, batch_ids=10)
    ids = [*CORPUS_IDS, "2401.00001"]  # 15 ids, the last unknown to arXiv
    with ArxivClient(settings) as client:
        found = client.fetch_metadata(ids)
    batches = [r.ids for r in arxiv_stub.api_requests()]
    assert [len(b) for b in batches] == [10, 5]
    assert [i for b in batches for i in b] == ids
    assert sorted(found) == sorted(CORPUS_IDS)  # the unknown id is absent
    meta = found["1706.03762"]
    assert meta.title == "Attention Is All You Need"
    assert (meta.id, meta.arxiv_id) == ("1706.03762", "1706.03762")
    assert (meta.version, meta.year) == (1, 2017)
    assert meta.authors == ("Ashish Vaswani",)
    assert meta.categories == ("cs.CL",)
    assert meta.pdf_url == arxiv_stub.pdf_url("1706.03762")
    assert meta.metadata_from == "arxiv"
    assert found["1409.0473"].year == 2014


def test_ids_are_keyed_as_given_and_versions_kept(tmp_path: Path, arxiv_stub: ArxivStub) -> None:
    with ArxivClient(ingest_settings(tmp_path, arxiv_stub)) as client:
        found = client.fetch_metadata(["2106.09685v2", "arXiv:1706.03762", "2106.09685v2"])
    assert set(found) == {"2106.09685v2", "arXiv:1706.03762"}
    assert (found["2106.09685v2"].id, found["2106.09685v2"].version) == ("2106.09685", 2)
    assert found["2106.09685v2"].pdf_url == arxiv_stub.pdf_url("2106.09685", 2)
    assert arxiv_stub.api_requests()[0].ids == ["2106.09685v2", "1706.03762"]


def test_recorded_reply_is_parsed_with_whitespace_collapsed(tmp_path: Path,
                                                            arxiv_stub: ArxivStub) -> None:
    arxiv_stub.respond("/api/query", (ARXIV_REPLIES / "arxiv_api_example_2016_legacy.xml")
                       .read_bytes())
    with ArxivClient(ingest_settings(tmp_path, arxiv_stub)) as client:
        meta = client.fetch_metadata(["1111.2011v2"])["1111.2011v2"]
    assert meta.title == ("Quantum Criticality for Extended Nodes on a Bethe Lattice in the "
                          "Large Connectivity Limit")
    assert "\n" not in meta.abstract and meta.abstract.startswith("Theoretical description")
    assert (meta.year, meta.version) == (2011, 2)
    assert meta.authors[0] == "James M. Murray" and len(meta.authors) == 3
    assert meta.categories == ("cond-mat.str-el", "cond-mat.stat-mech")
    assert meta.pdf_url == "http://arxiv.org/pdf/1111.2011v2"


def test_ids_missing_from_a_recorded_reply_are_absent(tmp_path: Path,
                                                      arxiv_stub: ArxivStub) -> None:
    arxiv_stub.respond("/api/query", (ARXIV_REPLIES / "arxiv_api_example_two_ids.xml")
                       .read_bytes())
    with ArxivClient(ingest_settings(tmp_path, arxiv_stub)) as client:
        found = client.fetch_metadata(["0808.05394", "1707.08567"])
    assert list(found) == ["1707.08567"]
    assert len(found["1707.08567"].authors) == 34


@pytest.mark.parametrize("status", [400, 200])
def test_error_entry_names_the_bad_id(tmp_path: Path, status: int) -> None:
    with ArxivStub(SHARED / "corpus", error_status=status) as stub, \
            ArxivClient(ingest_settings(tmp_path, stub)) as client:
        with pytest.raises(SourceNotFoundError, match=r"'abc'.*incorrect id format for abc"):
            client.fetch_metadata(["1706.03762", "abc"])
        assert client.reachable  # a bad id says nothing about the network
        assert len(stub.api_requests()) == 1  # not retried


def test_search(tmp_path: Path, arxiv_stub: ArxivStub) -> None:
    with ArxivClient(ingest_settings(tmp_path, arxiv_stub)) as client:
        hits = client.search("all:attention", max_results=5)
        few = client.search("cat:cs", max_results=3)
    assert [m.title for m in hits] == [
        "Attention Is All You Need",
        "FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness",
    ]
    assert all(m.metadata_from == "arxiv" and m.arxiv_id for m in hits)
    assert len(few) == 3
    first = arxiv_stub.api_requests()[0]
    assert first.param("search_query") == "all:attention"
    assert first.param("max_results") == "5"


def test_user_agent_is_sent(tmp_path: Path, arxiv_stub: ArxivStub) -> None:
    settings = ingest_settings(tmp_path, arxiv_stub, user_agent="paperchat-test/9 (tests)")
    with ArxivClient(settings) as client:
        client.fetch_metadata(["1706.03762"])
    assert arxiv_stub.api_requests()[0].headers["user-agent"] == "paperchat-test/9 (tests)"


def test_rate_limit_with_injected_clock(tmp_path: Path, arxiv_stub: ArxivStub) -> None:
    fake = FakeTime()
    settings = ingest_settings(tmp_path, arxiv_stub, request_interval_s=3.0)
    with ArxivClient(settings, sleep=fake.sleep, clock=fake.clock) as client:
        client.fetch_metadata(["1706.03762"])
        client.search("all:lora", 1)
        fake.now += 1.0  # one second of other work: two more to wait
        client.fetch_metadata(["2106.09685"])
    assert len(arxiv_stub.api_requests()) == 3
    assert fake.sleeps == pytest.approx([3.0, 2.0])


def test_rate_limit_spaces_real_requests(tmp_path: Path, arxiv_stub: ArxivStub) -> None:
    settings = ingest_settings(tmp_path, arxiv_stub, request_interval_s=0.2, batch_ids=1)
    with ArxivClient(settings) as client:
        client.fetch_metadata(["1706.03762", "2106.09685", "1810.04805"])
    times = [r.at for r in arxiv_stub.api_requests()]
    assert len(times) == 3
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(times))


def test_server_errors_are_retried_with_backoff(tmp_path: Path, arxiv_stub: ArxivStub) -> None:
    fake = FakeTime()
    arxiv_stub.fail("/api/query", "500", times=2)
    settings = ingest_settings(tmp_path, arxiv_stub, retries=2, backoff_s=1.5)
    with ArxivClient(settings, sleep=fake.sleep, clock=fake.clock) as client:
        found = client.fetch_metadata(["1706.03762"])
    assert "1706.03762" in found
    assert len(arxiv_stub.api_requests()) == 3
    assert fake.sleeps == pytest.approx([1.5, 3.0])  # exponential backoff


def test_stalled_api_times_out_and_marks_arxiv_unreachable(tmp_path: Path,
                                                           arxiv_stub: ArxivStub) -> None:
    arxiv_stub.fail("/api/query", "stall")
    settings = ingest_settings(tmp_path, arxiv_stub, timeout_s=0.3, retries=1)
    with ArxivClient(settings) as client:
        with pytest.raises(NetworkError, match=r"arXiv cannot be reached \(timed out\)"):
            client.fetch_metadata(["1706.03762"])
        assert not client.reachable
        with pytest.raises(NetworkError, match="metadata will come from the PDFs"):
            client.search("all:lora", 3)
    assert len(arxiv_stub.api_requests()) == 2  # one try + one retry, nothing after


def test_unreachable_arxiv_fails_fast_without_a_new_connection(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: connection refused
    settings = make_settings(tmp_path, ingest={
        "arxiv_api_url": f"http://127.0.0.1:{port}/api/query", "retries": 3}).ingest
    fake = FakeTime()
    with ArxivClient(settings, sleep=fake.sleep, clock=fake.clock) as client:
        with pytest.raises(NetworkError, match="arXiv cannot be reached") as first:
            client.fetch_metadata(["1706.03762"])
        assert "\n" not in str(first.value)
        assert not client.reachable
        assert fake.sleeps == []  # a refused connection is not retried
        with ArxivStub(SHARED / "corpus", port=port) as stub:  # arXiv is back on that port
            with pytest.raises(NetworkError, match="arXiv cannot be reached"):
                client.fetch_metadata(["2106.09685"])
            assert stub.requests == []  # the client did not even try
        assert fake.sleeps == []


def test_pdf_url_is_built_from_settings(tmp_path: Path, arxiv_stub: ArxivStub) -> None:
    with ArxivClient(ingest_settings(tmp_path, arxiv_stub)) as client:
        assert client.pdf_url("1706.03762", 7) == f"{arxiv_stub.pdf_base_url}/1706.03762v7"
        assert client.pdf_url("hep-th/9901001", None) == (
            f"{arxiv_stub.pdf_base_url}/hep-th/9901001")
