"""Settings of the hardened listener: auth penalty, the server process, and the per-listener
options (PROXY protocol, client certificates). Kept apart from config.py so the loader there
only calls in; every setting is documented with its default in conf/imapproxy.toml."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # config.py imports this module: no import cycle at run time
    from .config import _Table

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AuthPenaltyConfig:
    """Like Dovecot's auth_penalty: failure n (per IP and per user) is answered after
    ``min(max_delay, initial_delay * 2**(n-2))`` seconds, the first one at once."""

    initial_delay: float = 2.0
    max_delay: float = 15.0
    forget_after: float = 600.0  # seconds without a failure that reset the count
    failure_cache_ttl: float = 60.0  # a known-wrong password is refused locally this long


@dataclass(frozen=True)
class ServerConfig:
    user: str | None = None  # drop to this user after binding (when started as root)
    group: str | None = None  # and this group (default: the user's primary group)
    shutdown_grace: float = 10.0  # seconds in-flight commands get at SIGTERM


@dataclass(frozen=True)
class ListenerHardening:
    proxy_protocol: bool = False
    trusted_proxies: tuple[Network, ...] = ()
    client_ca_file: Path | None = None
    require_client_cert: bool = False


AUTH_PENALTY_KEYS = ("initial_delay", "max_delay", "forget_after", "failure_cache_ttl")
SERVER_KEYS = ("user", "group", "shutdown_grace")
LISTENER_KEYS = ("proxy_protocol", "trusted_proxies", "client_ca_file", "require_client_cert")
LIMITS_KEYS = ("max_connections", "max_connections_per_ip", "max_connections_per_user",
               "max_unauthenticated_per_ip", "max_nesting_depth", "exempt_loopback")


def _number(table: _Table, key: str, default: float) -> float:
    value = table.non_negative(key, float)
    return default if value is None else float(value)


def load_auth_penalty(table: _Table | None) -> AuthPenaltyConfig:
    defaults = AuthPenaltyConfig()
    if table is None:
        return defaults
    return AuthPenaltyConfig(
        initial_delay=_number(table, "initial_delay", defaults.initial_delay),
        max_delay=_number(table, "max_delay", defaults.max_delay),
        forget_after=_number(table, "forget_after", defaults.forget_after),
        failure_cache_ttl=_number(table, "failure_cache_ttl", defaults.failure_cache_ttl),
    )


def load_server(table: _Table | None) -> ServerConfig:
    defaults = ServerConfig()
    if table is None:
        return defaults
    grace = table.non_negative("shutdown_grace", float)
    return ServerConfig(user=table.string("user") or None, group=table.string("group") or None,
                        shutdown_grace=defaults.shutdown_grace if grace is None else grace)


def load_limits(table: _Table | None) -> dict[str, Any]:
    """The connection limits of [limits], as LimitsConfig fields (0 = no limit)."""
    out: dict[str, Any] = {}
    if table is None:
        return out
    for key in LIMITS_KEYS[:-2]:
        value = table.non_negative(key, int)
        if value is not None:
            out[key] = int(value)
    depth = table.positive_int("max_nesting_depth")
    if depth is not None:
        out["max_nesting_depth"] = depth
    exempt = table.boolean("exempt_loopback")
    if exempt is not None:
        out["exempt_loopback"] = exempt
    return out


def load_listener(table: _Table) -> dict[str, Any]:
    """The hardening options of one [[listener]], as ListenerConfig fields."""
    from .config import ConfigError

    out: dict[str, Any] = {}
    proxy = table.boolean("proxy_protocol")
    if proxy is not None:
        out["proxy_protocol"] = proxy
    raw = table.data.get("trusted_proxies")
    if raw is not None:
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            raise ConfigError(table.name("trusted_proxies"),
                              'must be an array of networks, e.g. ["127.0.0.0/8"]')
        try:
            out["trusted_proxies"] = tuple(ipaddress.ip_network(v, strict=False) for v in raw)
        except ValueError as exc:
            raise ConfigError(table.name("trusted_proxies"), str(exc)) from None
    if out.get("proxy_protocol") and not out.get("trusted_proxies"):
        raise ConfigError(table.name("trusted_proxies"),
                          "proxy_protocol = true needs the networks of the trusted proxies")
    ca = table.path("client_ca_file")
    if ca is not None:
        out["client_ca_file"] = ca
    require = table.boolean("require_client_cert")
    if require:
        if ca is None:
            raise ConfigError(table.name("require_client_cert"), "needs client_ca_file")
        out["require_client_cert"] = True
    return out
