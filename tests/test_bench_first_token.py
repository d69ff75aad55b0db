"""bench_answer's first-token part: its own bf16 and fp32 servers, the old prompt (from
benchmarks/answer_before.toml) against the new, written with ratios (no timing asserts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_answer, first_token
from core.errors import ConfigError
from tests.helpers import SHARED, make_settings
from tests.ui_helpers import served_model_path


def test_before_settings_are_laid_over_the_defaults(tmp_path: Path) -> None:
    after = make_settings(tmp_path / "data", retrieval={"k": 3})
    before = first_token.with_overrides(after, first_token.BEFORE)
    assert before.retrieval.k == 6 and before.llm.serve_dtype == "bfloat16"
    assert before.data_dir == after.data_dir and before.retrieval.fetch_k == after.retrieval.fetch_k
    names = [(n, d) for n, _, d in first_token.configs(before, after)]
    assert names == [("before", "bfloat16"), ("after", "bfloat16"), ("after", "float32")]
    typo = tmp_path / "typo.toml"
    typo.write_text("[retreival]\nk = 6\n")
    with pytest.raises(ConfigError, match="retrieval"):
        first_token.with_overrides(after, typo)


def test_summary_ratios() -> None:
    def rows(ms: float) -> list[dict[str, float]]:
        return [{"ttft_ms": ms, "prompt_tokens": 100.0, "decode_tok_s": 10.0}] * 3

    f = first_token.summary({"before_bfloat16": rows(3000), "after_bfloat16": rows(2000),
                             "after_float32": rows(1000)}, "float32", first_token.BEFORE, 3)
    assert f["ratio_bf16_to_fp32_p50"] == 2.0 and f["ratio_before_to_after_p50"] == 3.0
    assert "(chosen)" in first_token.table(f).split("after, float32")[1].splitlines()[0]


@pytest.mark.slow
@pytest.mark.llm
@pytest.mark.extra_server
def test_first_token_part_runs_both_dtypes(llm_url: str, tmp_path: Path) -> None:
    bench_answer.run("tiny", tmp_path, SHARED, "", first_token=True,
                     serve_model=served_model_path(llm_url))
    doc = json.loads((tmp_path / "answer.json").read_text())
    f = doc["figures"]["first_token"]
    assert set(f["configs"]) == {"before_bfloat16", "after_bfloat16", "after_float32"}
    for config in f["configs"].values():
        assert config["ttft_ms"]["n"] == f["questions"] == 1  # each question once, each config
        assert config["prompt_tokens"]["p50"] > 500  # a real `ask` prompt, passages and all
    assert f["chosen_dtype"] in ("bfloat16", "float32")
    assert f["ratio_bf16_to_fp32_p50"] > 0 and f["ratio_before_to_after_p50"] > 0
    assert "ask_ttft_ms" not in doc["figures"]  # no --llm-url: that part is left out
    assert any(t.startswith("### First token on the CPU") for t in doc["tables"])


def test_first_token_needs_the_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench_answer, "has_cuda", lambda: True)
    assert bench_answer.main(["--llm-url", "", "--first-token", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "first-token part skipped" in out and "CUDA" in out
    assert not list(tmp_path.iterdir())
