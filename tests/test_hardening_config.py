"""Loading the hardening settings from TOML: the new tables and listener options, their
defaults, and errors that name the setting."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest

from imapproxy.config import ConfigError, load_config
from imapproxy.hardening_config import AuthPenaltyConfig, ServerConfig


def test_defaults() -> None:
    config = load_config(None)
    assert config.auth_penalty == AuthPenaltyConfig()
    assert config.server == ServerConfig(shutdown_grace=10.0)
    assert (config.limits.max_connections, config.limits.max_connections_per_ip,
            config.limits.max_connections_per_user,
            config.limits.max_unauthenticated_per_ip) == (1000, 100, 20, 10)
    assert config.listeners[0].proxy_protocol is False


def test_everything_set(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, """
[auth_penalty]
initial_delay = 1
max_delay = 8
forget_after = 300
failure_cache_ttl = 0
[server]
user = "imapproxy"
group = "mail"
shutdown_grace = 3
[limits]
max_connections = 5
max_connections_per_ip = 0
max_connections_per_user = 2
max_unauthenticated_per_ip = 4
[[listener]]
bind = "127.0.0.1:1143"
proxy_protocol = true
trusted_proxies = ["10.0.0.0/8", "::1"]
"""))
    assert config.auth_penalty == AuthPenaltyConfig(1, 8, 300, 0)
    assert config.server == ServerConfig("imapproxy", "mail", 3)
    assert config.limits.max_connections == 5 and config.limits.max_connections_per_ip == 0
    assert config.limits.max_unauthenticated_per_ip == 4
    listener = config.listeners[0]
    assert listener.proxy_protocol
    assert listener.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),
                                        ipaddress.ip_network("::1/128"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "imapproxy.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "setting"), [
    ('[[listener]]\nbind = "127.0.0.1:1"\nproxy_protocol = true\n',
     "listener[0].trusted_proxies"),
    ('[[listener]]\nbind = "127.0.0.1:1"\ntrusted_proxies = ["not a net"]\n',
     "listener[0].trusted_proxies"),
    ('[[listener]]\nbind = "127.0.0.1:1"\ntrusted_proxies = "10.0.0.0/8"\n',
     "listener[0].trusted_proxies"),
    ('[[listener]]\nbind = "127.0.0.1:1"\nrequire_client_cert = true\n',
     "listener[0].require_client_cert"),
    ("[auth_penalty]\nmax_delay = -1\n", "auth_penalty.max_delay"),
    ("[auth_penalty]\nmax_dealy = 1\n", "auth_penalty.max_dealy"),
    ("[server]\nshutdown_grace = \"soon\"\n", "server.shutdown_grace"),
    ("[limits]\nmax_connections = 1.5\n", "limits.max_connections"),
])
def test_errors_name_the_setting(tmp_path: Path, text: str, setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert info.value.setting == setting


def test_shipped_example_config_parses() -> None:
    example = Path(__file__).parent.parent / "conf" / "imapproxy.toml"
    tomllib.loads(example.read_text())  # every documented setting is valid TOML
    config = load_config(example)
    assert config.server.shutdown_grace == 10
