"""Settings precedence: flag > environment > config file > default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sdcli.config import DEFAULT_URL, load_settings, mask_url, split_credentials
from sdcli.errors import UsageError


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    monkeypatch.setenv("SDCLI_CONFIG", str(path))
    for var in ("SDCLI_URL", "SDCLI_AUTH", "SDCLI_TIMEOUT", "SDCLI_OUTPUT_DIR", "SDCLI_PRESET"):
        monkeypatch.delenv(var, raising=False)
    return path


def test_defaults_without_any_source(config_file: Path) -> None:
    s = load_settings(env={})
    assert s.url == DEFAULT_URL
    assert s.auth is None
    assert s.timeout is None
    assert s.url_source == "default"


def test_file_then_env_then_flag(config_file: Path) -> None:
    config_file.write_text('url = "http://file:1"\ntimeout = 11\noutput_dir = "from-file"\n')
    assert load_settings(env={}).url == "http://file:1"
    assert load_settings(env={}).timeout == 11.0
    env = {"SDCLI_URL": "http://env:2", "SDCLI_TIMEOUT": "22"}
    s = load_settings(env=env)
    assert (s.url, s.timeout, s.url_source) == ("http://env:2", 22.0, "env")
    s = load_settings(url="http://flag:3", timeout="33", env=env)
    assert (s.url, s.timeout, s.url_source) == ("http://flag:3", 33.0, "flag")
    assert s.output_dir == Path("from-file")


def test_credentials_in_url_are_split_out_and_never_shown(config_file: Path) -> None:
    s = load_settings(url="http://me:s3cr%40t@127.0.0.1:7860/", env={})
    assert s.url == "http://127.0.0.1:7860"
    assert s.auth == ("me", "s3cr@t")
    assert "s3cr" not in repr(s)


def test_auth_flag_beats_url_credentials(config_file: Path) -> None:
    s = load_settings(url="http://a:b@localhost:7860", auth="c:d:e", env={})
    assert s.auth == ("c", "d:e")


def test_bad_values_are_usage_errors(config_file: Path) -> None:
    with pytest.raises(UsageError, match="USER:PASS"):
        load_settings(auth="nopassword", env={})
    with pytest.raises(UsageError, match="number of seconds"):
        load_settings(timeout="soon", env={})
    with pytest.raises(UsageError, match="invalid"):
        load_settings(url="ftp://x", env={})
    config_file.write_text("url = \n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_settings(env={})


def test_unknown_config_key_is_named(config_file: Path) -> None:
    config_file.write_text('urll = "http://x"\n')
    with pytest.raises(UsageError, match="urll"):
        load_settings(env={})


def test_timeout_none_means_wait_forever_and_zero_is_refused(config_file: Path) -> None:
    assert load_settings(timeout="none", env={}).timeout is None
    with pytest.raises(UsageError, match="above 0"):
        load_settings(timeout="0", env={})


def test_world_readable_config_with_password_warns(config_file: Path) -> None:
    config_file.write_text('auth = "u:p"\n')
    config_file.chmod(0o644)
    assert any("chmod 600" in w for w in load_settings(env={}).warnings)
    config_file.chmod(0o600)
    assert load_settings(env={}).warnings == ()


def test_plain_http_password_to_remote_host_warns(config_file: Path) -> None:
    s = load_settings(url="http://gpu-box:7860", auth="u:p", env={})
    assert any("unencrypted" in w for w in s.warnings)
    assert load_settings(url="http://127.0.0.1:7860", auth="u:p", env={}).warnings == ()


def test_mask_url_hides_password() -> None:
    assert mask_url("http://u:secret@h:1") == "http://u:***@h:1"
    assert split_credentials("localhost:7861")[0] == "http://localhost:7861"


def test_a_client_from_settings_has_their_server_and_timeouts() -> None:
    from sdcli.client import WebUIClient

    settings = load_settings(url="http://u:p@127.0.0.1:7861", timeout="90", env={})
    client = WebUIClient.from_settings(settings)
    assert (client.base_url, client.timeout, client.connect_timeout) == (
        "http://127.0.0.1:7861",
        90.0,
        settings.connect_timeout,
    )
    assert client.sent_auth
    quick = WebUIClient.from_settings(settings, quick=1.0)  # completion: every wait is short
    assert (quick.timeout, quick.connect_timeout, quick.quick_timeout) == (1.0, 1.0, 1.0)


def test_the_presets_path_is_read_in_config(tmp_path: Path) -> None:
    from sdcli.config import preset_path_dirs

    raw = os.pathsep.join([str(tmp_path / "a"), " ", "~/b"])
    assert preset_path_dirs({"SDCLI_PRESETS_PATH": raw}) == [
        tmp_path / "a",
        Path("~/b").expanduser(),
    ]
    assert preset_path_dirs({}) == []
