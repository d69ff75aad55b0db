"""Settings precedence: defaults < TOML < environment < CLI flags; and `paperchat config`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings, describe, load_settings


def test_defaults_are_described_and_loopback() -> None:
    s = Settings()
    assert s.ui.host == "127.0.0.1"
    assert s.ui.share is False
    assert all(desc for _, _, desc in describe()), "every field has a description"


def test_precedence(tmp_path: Path) -> None:
    toml = tmp_path / "paperchat.toml"
    toml.write_text('[llm]\nbase_url = "http://toml/v1"\nmax_tokens = 10\n'
                    '[retrieval]\nk = 3\n')
    env = {"PAPERCHAT_LLM_BASE_URL": "http://env/v1", "PAPERCHAT_RETRIEVAL_K": "4"}
    s = load_settings(cli={"retrieval": {"k": 5}}, environ=env, config_file=toml)
    assert s.llm.base_url == "http://env/v1"  # env beats TOML
    assert s.llm.max_tokens == 10  # TOML beats default
    assert s.retrieval.k == 5  # CLI beats env


def test_data_dir_shortcut_and_toml_in_data_dir(tmp_path: Path) -> None:
    (tmp_path / "paperchat.toml").write_text("[ui]\nport = 9999\n")
    s = load_settings(environ={"PAPERCHAT_DATA_DIR": str(tmp_path)})
    assert s.data_dir == tmp_path.resolve()
    assert s.ui.port == 9999


def test_bad_values_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"retrieval\.k"):
        load_settings(environ={"PAPERCHAT_RETRIEVAL_K": "many"})
    with pytest.raises(ConfigError, match="PAPERCHAT_LLM_BASEURL"):
        load_settings(environ={"PAPERCHAT_LLM_BASEURL": "x"})
    bad = tmp_path / "bad.toml"
    bad.write_text("[llm\n")
    with pytest.raises(ConfigError, match="Invalid TOML"):
        load_settings(environ={}, config_file=bad)


def test_library_key_changes_with_what_builds_vectors() -> None:
    a = Settings()
    b = load_settings(cli={"embedding": {"model": "intfloat/e5-small-v2"}}, environ={})
    c = load_settings(cli={"chunking": {"chunk_tokens": 128}}, environ={})
    assert len({a.library_key(), b.library_key(), c.library_key()}) == 3


def test_config_command_prints_effective_settings(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "paperchat.cli", "--data-dir", str(tmp_path), "config"],
        capture_output=True, text=True, check=True,
        env={"PAPERCHAT_LLM_MODEL": "m1", "PATH": "/usr/bin"})
    data = json.loads(out.stdout)
    assert data["paths"]["data_dir"] == str(tmp_path.resolve())
    assert data["llm"]["model"] == "m1"


def test_misspelt_keys_are_errors_naming_the_nearest_valid_one(tmp_path: Path) -> None:
    toml = tmp_path / "paperchat.toml"
    toml.write_text("[retreival]\nk = 3\n")
    with pytest.raises(ConfigError, match=r"Unknown setting retreival.*Did you mean retrieval\?"):
        load_settings(environ={}, config_file=toml)
    toml.write_text("[retrieval]\nper_paper_cpa = 3\n")
    with pytest.raises(ConfigError, match=r"retrieval\.per_paper_cpa.*retrieval\.per_paper_cap"):
        load_settings(environ={}, config_file=toml)
    with pytest.raises(ConfigError, match=r"llm\.max_tokns.*llm\.max_tokens"):
        load_settings(cli={"llm": {"max_tokns": 5}}, environ={})
    with pytest.raises(ConfigError, match="PAPERCHAT_LLM_BASE_URL"):
        load_settings(environ={"PAPERCHAT_LLM_BASEURL": "x"})
