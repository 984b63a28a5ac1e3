"""The connection-management settings of [upstream]: loaded, checked, and documented."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from imapproxy.config import ConfigError, Overrides, UpstreamPoolConfig, load_config

REPO = Path(__file__).resolve().parents[2]


def load(tmp_path: Path, text: str) -> UpstreamPoolConfig:
    path = tmp_path / "imapproxy.toml"
    path.write_text("[upstream]\n" + text, encoding="utf-8")
    return load_config(path, Overrides()).upstream.pool


def test_defaults_and_values(tmp_path: Path) -> None:
    assert load(tmp_path, "") == UpstreamPoolConfig()
    pool = load(tmp_path, "reuse_idle_seconds = 0\nmax_connections = 40\n"
                          "max_connections_per_user = 4\nqueue_timeout = 2.5\n"
                          "breaker_failures = 3\ndegraded_reads = true\n")
    assert pool.reuse_idle_seconds == 0.0 and isinstance(pool.reuse_idle_seconds, float)
    assert (pool.max_connections, pool.max_connections_per_user) == (40, 4)
    assert pool.queue_timeout == 2.5 and pool.breaker_failures == 3 and pool.degraded_reads


def test_shared_idle_settings(tmp_path: Path) -> None:
    defaults = UpstreamPoolConfig()
    assert (defaults.idle_release_after, defaults.max_parked_per_user) == (10.0, 8)
    assert (defaults.idle_poll_interval, defaults.idle_renew_seconds) == (60.0, 1740.0)
    pool = load(tmp_path, "shared_idle = true\nidle_release_after = 0\n"
                          "max_parked_per_user = 0\nidle_poll_interval = 5\n"
                          "idle_renew_seconds = 600\n")
    assert pool.shared_idle and pool.idle_release_after == 0.0
    assert pool.max_parked_per_user == 0 and isinstance(pool.max_parked_per_user, int)
    assert (pool.idle_poll_interval, pool.idle_renew_seconds) == (5.0, 600.0)


@pytest.mark.parametrize(("line", "problem"), [
    ("max_connections = -1", "must be 0 or more"),
    ("max_connections = 1.5", "must be an integer"),
    ("degraded_reads = 1", "must be true or false"),
    ("queue_timeout = \"fast\"", "must be a number"),
])
def test_bad_values_name_the_setting(tmp_path: Path, line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, line + "\n")
    assert info.value.setting == "upstream." + line.split(" ")[0]
    assert problem in info.value.problem


def test_sample_config_documents_every_pool_setting() -> None:
    text = (REPO / "conf" / "imapproxy.toml").read_text(encoding="utf-8")
    sample = load_config(REPO / "conf" / "imapproxy.toml", Overrides()).upstream.pool
    assert sample == UpstreamPoolConfig()
    for field in dataclasses.fields(UpstreamPoolConfig):
        assert f"\n{field.name} = " in text, field.name
