"""The [metrics], [admin] and log_format settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from imapproxy.config import Config, ConfigError, Overrides, load_config


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "imapproxy.toml"
    path.write_text(text)
    return load_config(path, Overrides(cache_dir=tmp_path / "cache"))


def test_defaults_metrics_off_admin_socket_in_the_cache_dir(tmp_path: Path) -> None:
    config = load_config(None, Overrides(cache_dir=tmp_path / "cache"))
    assert config.observability.metrics_bind is None
    assert config.observability.log_format == "text"
    assert config.admin_socket == tmp_path / "cache" / "admin.sock"


def test_settings_are_read(tmp_path: Path) -> None:
    config = _load(tmp_path, 'log_format = "json"\n[metrics]\nbind = "127.0.0.1:9143"\n'
                             '[admin]\nsocket = "run/admin.sock"\n')
    assert config.observability.log_format == "json"
    assert config.observability.metrics_bind == ("127.0.0.1", 9143)
    assert config.admin_socket == tmp_path / "run" / "admin.sock"
    off = _load(tmp_path, "[admin]\nenabled = false\n")
    assert off.admin_socket is None


@pytest.mark.parametrize(("text", "setting"), [
    ('log_format = "xml"\n', "log_format"),
    ('[metrics]\nbind = "nowhere"\n', "metrics.bind"),
    ('[admin]\nenabled = "yes"\n', "admin.enabled"),
])
def test_bad_settings_name_the_setting(tmp_path: Path, text: str, setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert setting in str(caught.value)
