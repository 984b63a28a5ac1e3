"""Settings: dataclasses with embedded defaults, loaded from TOML and overridden by flags.

Every setting here is documented with its default in conf/imapproxy.toml.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import re
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import platformdirs

from . import hardening_config as hardening
from .filtering.names import CLIENT_FIXUPS, SERVER_QUIRKS
from .hardening_config import AuthPenaltyConfig, Network, ServerConfig

TlsMode = Literal["none", "starttls", "implicit"]
UpstreamSecurity = Literal["plain", "starttls", "implicit"]
LogFormat = Literal["text", "kv", "json"]


class ConfigError(Exception):
    """A setting is wrong; str() is one line naming the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"config error: {setting}: {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True)
class UpstreamPoolConfig:
    """Upstream connection management (imapproxy/upstream/pool.py, docs/upstream.md)."""

    reuse_idle_seconds: float = 60.0  # keep a logged-out user's connection this long (0 = off)
    max_connections: int = 0  # upstream connections over all users (0 = no cap)
    max_connections_per_user: int = 0  # upstream connections per user (0 = no cap)
    queue_timeout: float = 30.0  # a login waits this long for a free connection slot
    throttle_initial: float = 0.05  # back-off after [THROTTLED], doubled each time...
    throttle_max: float = 16.0  # ...up to this
    throttle_shrink_after: float = 0.5  # halved after this long without a throttle
    slow_response_seconds: float = 0.0  # a slower first response counts as throttling (0 = off)
    breaker_failures: int = 5  # consecutive upstream failures that open the breaker (0 = off)
    breaker_cooldown: float = 30.0  # seconds the breaker stays open before a probe
    degraded_reads: bool = False  # keep a session whose upstream died, serving cached reads
    shared_idle: bool = False  # one upstream IDLE per user and mailbox (upstream/shared_idle.py)
    idle_release_after: float = 10.0  # a shared-IDLE follower gives its connection back then
    max_parked_per_user: int = 8  # parked connections kept per user; extra ones log out
    idle_poll_interval: float = 60.0  # leader's NOOP polling without upstream IDLE (0 = none)
    idle_renew_seconds: float = 29 * 60.0  # the leader re-issues its upstream IDLE (0 = never)


@dataclass(frozen=True)
class UpstreamConfig:
    url: str = "imap://127.0.0.1:143"
    host: str = "127.0.0.1"
    port: int = 143
    security: UpstreamSecurity = "plain"
    ca_file: Path | None = None
    insecure_skip_verify: bool = False  # tests only; logs a warning
    connect_timeout: float = 30.0
    command_timeout: float = 300.0  # like imapc_cmd_timeout
    prefetch_count: int = 32  # bodies fetched ahead of a client (0 = off), like mail_prefetch_count
    select_state_count: int = 64  # newest messages' state read with SELECT (0 = off)
    rate_limit: float = 0.0  # upstream commands per second over all sessions (0 = no limit)
    max_concurrent_commands: int = 0  # upstream commands in flight over all sessions (0 = any)
    quirks: tuple[str, ...] = ()  # server fixups (imapproxy/filtering/names.py)
    pool: UpstreamPoolConfig = field(default_factory=UpstreamPoolConfig)


@dataclass(frozen=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 1143
    tls: TlsMode = "none"
    cert_file: Path | None = None
    key_file: Path | None = None
    allow_plaintext_auth: bool = False  # loopback clients are always allowed
    proxy_protocol: bool = False  # HAProxy PROXY v1/v2 header first (server/proxy_protocol.py)
    trusted_proxies: tuple[Network, ...] = ()  # who may send that header
    client_ca_file: Path | None = None  # CA of client certificates (asked for when set)
    require_client_cert: bool = False
    filters: tuple[str, ...] = ()  # message filters, in order (docs/filters.md)
    fixups: tuple[str, ...] = ()  # client fixups

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class LimitsConfig:
    max_line_length: int = 64 * 1024
    max_literal_size: int = 64 * 1024 * 1024
    preauth_timeout: float = 60.0
    idle_timeout: float = 30 * 60.0
    max_connections: int = 1000  # 0 = no limit (server/limits.py)
    max_connections_per_ip: int = 100
    max_connections_per_user: int = 20
    max_unauthenticated_per_ip: int = 10
    # Loopback clients all share one address: not limited or penalised per address.
    exempt_loopback: bool = True
    max_nesting_depth: int = 64  # parenthesised lists in a command; deeper gets BAD


@dataclass(frozen=True)
class CacheConfig:
    """The message cache (imapproxy/cache/, docs/cache.md). Its directory is Config.cache_dir."""

    max_size: int = 1024**3  # bytes on disk; least recently used entries are evicted beyond
    memory_only_size: int = 64 * 1024**2  # filter output that must stay off disk (filters.md)
    hot_size: int = 64 * 1024**2  # recently read small messages also kept in memory (0 = off)


@dataclass(frozen=True)
class FilterRule:
    """``[[filter_rule]]``: for sessions whose user and client ID name match (shell-style
    globs, case-insensitive; an absent key matches anything), ``filters`` / ``fixups``
    replace the listener's. The first matching rule wins."""

    user: str | None = None
    client_name: str | None = None
    listener: str | None = None  # a listener's bind, e.g. "0.0.0.0:1993"
    filters: tuple[str, ...] | None = None
    fixups: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ObservabilityConfig:
    """Metrics, log format and the admin socket (imapproxy/observability/)."""

    log_format: LogFormat = "text"
    metrics_bind: tuple[str, int] | None = None  # off by default
    admin_socket: Path | None = None  # None: <cache dir>/admin.sock
    admin_enabled: bool = True


@dataclass(frozen=True)
class Config:
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    listeners: tuple[ListenerConfig, ...] = (ListenerConfig(),)
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log_level: str = "INFO"
    cache: CacheConfig = field(default_factory=CacheConfig)
    auth_penalty: AuthPenaltyConfig = field(default_factory=AuthPenaltyConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    filter_settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # [filters.NAME]
    filter_rules: tuple[FilterRule, ...] = ()
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)

    @property
    def admin_socket(self) -> Path | None:
        if not self.observability.admin_enabled:
            return None
        return self.observability.admin_socket or self.cache_dir / "admin.sock"


# --------------------------------------------------------------------------------------------
# Loading: TOML file + command-line overrides -> Config
# --------------------------------------------------------------------------------------------

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TLS_MODES: tuple[TlsMode, ...] = ("none", "starttls", "implicit")

_SCHEMES: dict[str, tuple[UpstreamSecurity, int]] = {
    "imap": ("plain", 143),
    "imap+starttls": ("starttls", 143),
    "imaps": ("implicit", 993),
}

_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?")


def default_cache_dir() -> Path:
    """The per-user cache directory, e.g. ~/.cache/imapproxy on Linux."""
    return Path(platformdirs.user_cache_dir("imapproxy"))


def _split_host_port(
    value: str,
    setting: str,
    *,
    default_port: int | None,
    allow_port_zero: bool,
    shown: str | None = None,
) -> tuple[str, int]:
    """Split "host[:port]" / "[v6]:port"; the host comes back without brackets.

    ``shown`` is what error messages quote (the whole URL rather than its host part)."""
    quoted = repr(value if shown is None else shown)
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ConfigError(setting, f"{quoted}: missing ']' after the IPv6 address")
        host, rest = value[1:end], value[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(setting, f"{quoted}: {host!r} is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise ConfigError(setting, f"{quoted}: unexpected {rest!r} after ']'")
        port_text: str | None = rest[1:] if rest else None
    else:
        if value.count(":") > 1:
            raise ConfigError(
                setting, f"{quoted}: write IPv6 addresses in brackets, e.g. [::1]:1143"
            )
        host, sep, port_text_ = value.partition(":")
        port_text = port_text_ if sep else None
        if not host:
            raise ConfigError(setting, f"{quoted}: the host is missing")
        if not _HOSTNAME_RE.fullmatch(host):
            raise ConfigError(setting, f"{quoted}: {host!r} is not a host name or IP address")
    if port_text is None:
        if default_port is None:
            raise ConfigError(setting, f"{quoted}: the port is missing (expected HOST:PORT)")
        return host, default_port
    if not port_text.isascii() or not port_text.isdigit():
        raise ConfigError(setting, f"{quoted}: the port must be a number")
    port = int(port_text)
    low = 0 if allow_port_zero else 1
    if not low <= port <= 65535:
        raise ConfigError(setting, f"{quoted}: the port must be between {low} and 65535")
    return host, port


def parse_upstream_url(
    url: str, setting: str = "upstream.url"
) -> tuple[str, int, UpstreamSecurity]:
    """Parse ``imap://``, ``imap+starttls://`` or ``imaps://`` HOST[:PORT] into
    (host, port, security). IPv6 hosts are written in brackets and returned without."""
    expected = "expected imap://HOST[:PORT], imap+starttls://HOST[:PORT] or imaps://HOST[:PORT]"
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        raise ConfigError(setting, f"{url!r} is not a URL; {expected}")
    if scheme.lower() not in _SCHEMES:
        raise ConfigError(setting, f"{url!r}: unsupported scheme {scheme!r}; {expected}")
    security, default_port = _SCHEMES[scheme.lower()]
    rest = rest.removesuffix("/")
    if "@" in rest:
        raise ConfigError(
            setting,
            f"{url!r}: a user name in the URL is not supported (yet); "
            "clients log in upstream with their own credentials",
        )
    if any(c in rest for c in "/?#"):
        raise ConfigError(setting, f"{url!r}: a path, query or fragment is not allowed")
    if not rest:
        raise ConfigError(setting, f"{url!r}: the host is missing")
    host, port = _split_host_port(
        rest, setting, default_port=default_port, allow_port_zero=False, shown=url
    )
    return host, port, security


def parse_bind(value: str, setting: str) -> tuple[str, int]:
    """Parse a listen address "HOST:PORT" or "[IPV6]:PORT" into (host, port).

    Port 0 is accepted (the system picks a free port; useful in tests)."""
    return _split_host_port(value.strip(), setting, default_port=None, allow_port_zero=True)


@dataclass(frozen=True)
class Overrides:
    """Values given on the command line; None / empty means "not given"."""

    listen: list[str] = field(default_factory=list)
    listen_tls: list[str] = field(default_factory=list)
    upstream: str | None = None
    upstream_ca: Path | None = None
    insecure_upstream: bool = False
    cache_dir: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allow_plaintext_auth: bool | None = None
    log_level: str | None = None


_TOP_KEYS = ("log_level", "log_format", "upstream", "listener", "cache", "limits", "filters",
             "filter_rule", "metrics", "admin", "auth_penalty", "server")
_UPSTREAM_KEYS = ("url", "ca_file", "insecure_skip_verify", "connect_timeout", "command_timeout",
                  "prefetch_count", "select_state_count", "rate_limit", "max_concurrent_commands", "quirks",
                  *(f.name for f in dataclasses.fields(UpstreamPoolConfig)))
_LISTENER_KEYS = ("bind", "tls", "cert_file", "key_file", "allow_plaintext_auth", "filters",
                  "fixups", *hardening.LISTENER_KEYS)
_RULE_KEYS = ("user", "client_name", "listener", "filters", "fixups")
_CACHE_KEYS = ("dir", "max_size", "memory_only_size", "hot_size")
_LIMITS_KEYS = ("max_line_length", "max_literal_size", "preauth_timeout", "idle_timeout",
                *hardening.LIMITS_KEYS)


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return "a date/time"


class _Table:
    """One TOML table, with typed getters that raise ConfigError naming the full key."""

    def __init__(self, data: dict[str, Any], prefix: str, known: tuple[str, ...], base: Path):
        self.data = data
        self.prefix = prefix
        self.base = base
        for key in data:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ConfigError(self.name(key), f"unknown setting{extra}")

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def _wrong(self, key: str, want: str) -> ConfigError:
        return ConfigError(self.name(key), f"must be {want}, not {_toml_type(self.data[key])}")

    def string(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._wrong(key, "a string")
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false")
        return value

    def positive_int(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(key, "an integer")
        if value <= 0:
            raise ConfigError(self.name(key), f"must be greater than 0, not {value}")
        return value

    def non_negative(self, key: str, kind: type[int | float]) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (kind is int and not isinstance(value, int)):
            raise self._wrong(key, "an integer" if kind is int else "a number")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(self.name(key), f"must be 0 or more, not {value}")
        return value

    def seconds(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._wrong(key, "a number of seconds")
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(self.name(key), f"must be a number of seconds > 0, not {value}")
        return float(value)

    def path(self, key: str) -> Path | None:
        """A path; relative paths are relative to the config file's directory."""
        value = self.string(key)
        if value is None:
            return None
        if not value:
            raise ConfigError(self.name(key), "must not be empty")
        return self.base / Path(value).expanduser()

    def names(self, key: str, allowed: frozenset[str] | None = None) -> tuple[str, ...] | None:
        """An array of names (filters, fixups, quirks); ``allowed`` checks them."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self.name(key), "must be an array of names, e.g. [\"a\", \"b\"]")
        for name in value:
            if allowed is not None and name not in allowed:
                hint = difflib.get_close_matches(name, allowed, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ConfigError(self.name(key), f"unknown name {name!r}{extra}; known: "
                                  f"{', '.join(sorted(allowed))}")
        return tuple(value)

    def subtable(self, key: str, known: tuple[str, ...]) -> _Table | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._wrong(key, "a table")
        return _Table(value, self.name(key), known, self.base)


@dataclass
class _ListenerDraft:
    """A listener before validation, remembering where each value came from."""

    host: str
    port: int
    tls: TlsMode
    origin: str  # "listener[0]" or "--listen 127.0.0.1:1143"
    bind_setting: str
    cert_file: Path | None = None
    key_file: Path | None = None
    cert_setting: str = ""
    key_setting: str = ""
    allow_plaintext_auth: bool = False
    hardening: dict[str, Any] = field(default_factory=dict)
    filters: tuple[str, ...] = ()
    fixups: tuple[str, ...] = ()

    @property
    def bind(self) -> str:
        return ListenerConfig(host=self.host, port=self.port).bind


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the config file: {exc.strerror}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"the config file is not UTF-8: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from None


def _check_readable(path: Path, setting: str) -> None:
    try:
        with path.open("rb"):
            pass
    except IsADirectoryError:
        raise ConfigError(setting, f"{path} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.strerror}") from None


def _check_cert_and_key(draft: _ListenerDraft) -> None:
    assert draft.cert_file is not None and draft.key_file is not None
    _check_readable(draft.cert_file, draft.cert_setting)
    _check_readable(draft.key_file, draft.key_setting)

    def no_passphrase() -> str:
        raise ConfigError(draft.key_setting, f"{draft.key_file} is protected by a passphrase; "
                          "imapproxy needs an unencrypted key")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(draft.cert_file, draft.key_file, password=no_passphrase)
    except ssl.SSLError as exc:
        raise ConfigError(
            draft.cert_setting,
            f"cannot use certificate {draft.cert_file} with key {draft.key_file}: "
            f"{exc.reason or exc} (is it a PEM certificate, and does the key match it?)",
        ) from None


def _check_ca_file(path: Path, setting: str) -> None:
    _check_readable(path, setting)
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigError(
            setting, f"{path} holds no usable PEM CA certificate: {exc.reason or exc}"
        ) from None


def _log_level(value: str, setting: str) -> str:
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(setting, f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def _file_listeners(root: _Table) -> list[_ListenerDraft]:
    raw = root.data.get("listener")
    if raw is None:
        return []
    if isinstance(raw, dict):
        raise ConfigError("listener", "write listeners as [[listener]] (an array of tables)")
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise ConfigError("listener", "must be an array of tables: [[listener]]")
    if not raw:
        raise ConfigError("listener", "at least one listener is needed")
    drafts = []
    for index, item in enumerate(raw):
        table = _Table(item, f"listener[{index}]", _LISTENER_KEYS, root.base)
        bind = table.string("bind")
        if bind is None:
            raise ConfigError(table.name("bind"), 'missing, e.g. bind = "127.0.0.1:1143"')
        host, port = parse_bind(bind, table.name("bind"))
        tls = table.string("tls") or "none"
        if tls not in TLS_MODES:
            raise ConfigError(
                table.name("tls"), f"{tls!r} is not one of {', '.join(map(repr, TLS_MODES))}"
            )
        cert = table.path("cert_file")
        key = table.path("key_file")
        if tls == "none" and (cert or key):
            raise ConfigError(
                table.name("tls"),
                'is "none" but a certificate is set; use "starttls" or "implicit", '
                "or remove cert_file/key_file",
            )
        drafts.append(
            _ListenerDraft(
                host=host,
                port=port,
                tls=tls,
                origin=table.prefix,
                bind_setting=table.name("bind"),
                cert_file=cert,
                key_file=key,
                cert_setting=table.name("cert_file"),
                key_setting=table.name("key_file") if key else table.name("cert_file"),
                allow_plaintext_auth=bool(table.boolean("allow_plaintext_auth")),
                hardening=hardening.load_listener(table),
                filters=table.names("filters") or (),
                fixups=table.names("fixups", CLIENT_FIXUPS) or (),
            )
        )
    return drafts


def _merge_listeners(
    from_file: list[_ListenerDraft], overrides: Overrides
) -> list[_ListenerDraft]:
    if overrides.tls_key is not None and overrides.tls_cert is None:
        raise ConfigError("--tls-key", "needs --tls-cert as well")
    cert = overrides.tls_cert
    key = overrides.tls_key if overrides.tls_key is not None else cert
    key_setting = "--tls-key" if overrides.tls_key is not None else "--tls-cert"

    def from_flag(flag: str, value: str, tls: TlsMode) -> _ListenerDraft:
        host, port = parse_bind(value, flag)
        return _ListenerDraft(
            host=host,
            port=port,
            tls=tls,
            origin=f"{flag} {value}",
            bind_setting=flag,
            cert_file=cert if tls != "none" else None,
            key_file=key if tls != "none" else None,
            cert_setting="--tls-cert",
            key_setting=key_setting,
        )

    plain_tls: TlsMode = "starttls" if cert is not None else "none"
    listeners: list[_ListenerDraft]
    if overrides.listen:
        # --listen replaces the file's plain-port listeners (tls "none" and "starttls");
        # its implicit-TLS listeners stay.
        listeners = [d for d in from_file if d.tls == "implicit"]
        listeners[:0] = [from_flag("--listen", v, plain_tls) for v in overrides.listen]
    elif from_file:
        listeners = list(from_file)
    elif overrides.listen_tls:
        listeners = []
    else:
        default = ListenerConfig()
        listeners = [from_flag("--listen", default.bind, plain_tls)]
        listeners[0].origin = f"the default listener {default.bind}"
    if overrides.listen_tls:
        if cert is None:
            raise ConfigError("--listen-tls", "needs --tls-cert (and --tls-key)")
        listeners += [from_flag("--listen-tls", v, "implicit") for v in overrides.listen_tls]
    if cert is not None:
        # The certificate flags also replace the certificate of the file's TLS listeners.
        for draft in listeners:
            if draft.tls != "none":
                draft.cert_file, draft.key_file = cert, key
                draft.cert_setting, draft.key_setting = "--tls-cert", key_setting
    if overrides.allow_plaintext_auth is not None:
        for draft in listeners:
            draft.allow_plaintext_auth = overrides.allow_plaintext_auth
    return listeners


def _finish_listeners(drafts: list[_ListenerDraft]) -> tuple[ListenerConfig, ...]:
    seen: dict[tuple[str, int], _ListenerDraft] = {}
    result = []
    for draft in drafts:
        if draft.port != 0:
            other = seen.setdefault((draft.host.lower(), draft.port), draft)
            if other is not draft:
                raise ConfigError(
                    draft.bind_setting, f"{draft.bind} is already used by {other.origin}"
                )
        if draft.tls != "none":
            if draft.cert_file is None:
                raise ConfigError(
                    draft.cert_setting,
                    f'missing: tls = "{draft.tls}" needs a certificate (cert_file and key_file)',
                )
            if draft.key_file is None:  # a PEM file can hold both certificate and key
                draft.key_file = draft.cert_file
            _check_cert_and_key(draft)
        result.append(
            ListenerConfig(
                host=draft.host,
                port=draft.port,
                tls=draft.tls,
                cert_file=draft.cert_file,
                key_file=draft.key_file,
                allow_plaintext_auth=draft.allow_plaintext_auth,
                **draft.hardening,
                filters=draft.filters,
                fixups=draft.fixups,
            )
        )
    return tuple(result)


def _load_upstream(root: _Table, overrides: Overrides) -> UpstreamConfig:
    defaults = UpstreamConfig()
    table = root.subtable("upstream", _UPSTREAM_KEYS) or _Table({}, "upstream", (), root.base)
    url, url_setting = table.string("url") or defaults.url, table.name("url")
    if overrides.upstream is not None:
        url, url_setting = overrides.upstream, "--upstream"
    host, port, security = parse_upstream_url(url, url_setting)
    ca_file, ca_setting = table.path("ca_file"), table.name("ca_file")
    if overrides.upstream_ca is not None:
        ca_file, ca_setting = overrides.upstream_ca, "--upstream-ca"
    if ca_file is not None:
        _check_ca_file(ca_file, ca_setting)
    insecure = overrides.insecure_upstream or bool(table.boolean("insecure_skip_verify"))
    connect_timeout = table.seconds("connect_timeout")
    command_timeout = table.seconds("command_timeout")
    prefetch = table.non_negative("prefetch_count", int)
    select_state = table.non_negative("select_state_count", int)
    rate = table.non_negative("rate_limit", float)
    concurrent = table.non_negative("max_concurrent_commands", int)
    return UpstreamConfig(
        url=url.strip(),
        host=host,
        port=port,
        security=security,
        ca_file=ca_file,
        insecure_skip_verify=insecure,
        connect_timeout=defaults.connect_timeout if connect_timeout is None else connect_timeout,
        command_timeout=defaults.command_timeout if command_timeout is None else command_timeout,
        prefetch_count=defaults.prefetch_count if prefetch is None else int(prefetch),
        select_state_count=(defaults.select_state_count if select_state is None
                            else int(select_state)),
        rate_limit=defaults.rate_limit if rate is None else float(rate),
        max_concurrent_commands=(defaults.max_concurrent_commands if concurrent is None
                                 else int(concurrent)),
        quirks=table.names("quirks", SERVER_QUIRKS) or (),
        pool=_load_pool(table),
    )


def _load_pool(table: _Table) -> UpstreamPoolConfig:
    """The connection-management keys of [upstream], each checked by its default's type."""
    values: dict[str, Any] = {}
    for name, default in dataclasses.asdict(UpstreamPoolConfig()).items():
        if isinstance(default, bool):
            value: Any = table.boolean(name)
        elif isinstance(default, int):
            value = table.non_negative(name, int)
        else:
            value = table.non_negative(name, float)
        if value is not None:
            values[name] = type(default)(value)
    return UpstreamPoolConfig(**values)


def _load_limits(root: _Table) -> LimitsConfig:
    table = root.subtable("limits", _LIMITS_KEYS)
    if table is None:
        return LimitsConfig()
    defaults = LimitsConfig()
    max_line = table.positive_int("max_line_length")
    max_literal = table.positive_int("max_literal_size")
    preauth = table.seconds("preauth_timeout")
    idle = table.seconds("idle_timeout")
    return LimitsConfig(
        max_line_length=defaults.max_line_length if max_line is None else max_line,
        max_literal_size=defaults.max_literal_size if max_literal is None else max_literal,
        preauth_timeout=defaults.preauth_timeout if preauth is None else preauth,
        idle_timeout=defaults.idle_timeout if idle is None else idle,
        **hardening.load_limits(table),
    )


_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(value: object, setting: str) -> int:
    """A byte count: an integer, or a string such as "512 MiB", "1G", "1.5 GiB" (K, M, G, T
    are powers of 1024)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(setting, f"must be a size in bytes or a string such as \"1 GiB\", "
                          f"not {_toml_type(value)}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.fullmatch(value.strip())
        if match is None:
            raise ConfigError(setting, f"{value!r} is not a size such as \"1 GiB\" or \"512M\"")
        size = int(float(match[1]) * _SIZE_UNITS[match[2].upper()])
    if size <= 0:
        raise ConfigError(setting, f"must be greater than 0, not {value!r}")
    return size


def _load_cache(table: _Table | None) -> CacheConfig:
    defaults = CacheConfig()
    if table is None:
        return defaults
    sizes = {key: parse_size(table.data[key], table.name(key))
             for key in ("max_size", "memory_only_size", "hot_size")
             if table.data.get(key) is not None}
    return dataclasses.replace(defaults, **sizes)


LOG_FORMATS: tuple[LogFormat, ...] = ("text", "kv", "json")


def _load_observability(root: _Table) -> ObservabilityConfig:
    log_format = root.string("log_format") or "text"
    if log_format not in LOG_FORMATS:
        raise ConfigError("log_format", f"must be one of {', '.join(LOG_FORMATS)}, "
                                        f"not {log_format!r}")
    metrics = root.subtable("metrics", ("bind",))
    bind = metrics.string("bind") if metrics is not None else None
    admin = root.subtable("admin", ("socket", "enabled"))
    enabled = admin.boolean("enabled") if admin is not None else None
    return ObservabilityConfig(
        log_format=log_format,  # checked against LOG_FORMATS
        metrics_bind=parse_bind(bind, "metrics.bind") if bind else None,
        admin_socket=admin.path("socket") if admin is not None else None,
        admin_enabled=True if enabled is None else enabled,
    )


def load_config(path: Path | None, overrides: Overrides | None = None) -> Config:
    """Build the Config from an optional TOML file and command-line overrides.

    Flags win over the file, the file wins over the built-in defaults. Every problem is
    reported as a ConfigError naming the setting (``listener[0].bind``, ``--upstream``...).
    """
    overrides = overrides or Overrides()
    data: dict[str, Any] = {} if path is None else _read_toml(path)
    base = Path(".") if path is None else path.parent
    root = _Table(data, "", _TOP_KEYS, base)

    upstream = _load_upstream(root, overrides)
    listeners = _finish_listeners(_merge_listeners(_file_listeners(root), overrides))
    limits = _load_limits(root)

    cache = root.subtable("cache", _CACHE_KEYS)
    cache_dir = overrides.cache_dir or (cache and cache.path("dir")) or default_cache_dir()

    if overrides.log_level is not None:
        log_level = _log_level(overrides.log_level, "--log-level")
    else:
        log_level = _log_level(root.string("log_level") or Config.log_level, "log_level")

    filter_settings = _filter_settings(root)
    rules = _filter_rules(root)
    _check_filters(listeners, rules, filter_settings)
    return Config(
        upstream=upstream,
        listeners=listeners,
        cache_dir=cache_dir.expanduser(),
        limits=limits,
        log_level=log_level,
        cache=_load_cache(cache),
        auth_penalty=hardening.load_auth_penalty(
            root.subtable("auth_penalty", hardening.AUTH_PENALTY_KEYS)),
        server=hardening.load_server(root.subtable("server", hardening.SERVER_KEYS)),
        filter_settings=filter_settings,
        filter_rules=rules,
        observability=_load_observability(root),
    )


def _filter_settings(root: _Table) -> dict[str, dict[str, Any]]:
    """``[filters.NAME]`` tables, given as they are to the filter's factory."""
    raw = root.data.get("filters", {})
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigError("filters", "must hold one table per filter: [filters.NAME]")
    return {name: dict(table) for name, table in raw.items()}


def _filter_rules(root: _Table) -> tuple[FilterRule, ...]:
    raw = root.data.get("filter_rule", [])
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise ConfigError("filter_rule", "must be an array of tables: [[filter_rule]]")
    rules = []
    for index, item in enumerate(raw):
        table = _Table(item, f"filter_rule[{index}]", _RULE_KEYS, root.base)
        rules.append(FilterRule(user=table.string("user"),
                                client_name=table.string("client_name"),
                                listener=table.string("listener"),
                                filters=table.names("filters"),
                                fixups=table.names("fixups", CLIENT_FIXUPS)))
    return tuple(rules)


def _check_filters(listeners: tuple[ListenerConfig, ...], rules: tuple[FilterRule, ...],
                   settings: dict[str, dict[str, Any]]) -> None:
    """Every filter named anywhere loads and accepts its settings, now rather than at the
    first message."""
    from .filtering.registry import FilterSetupError, create

    named = [(f"listener[{i}].filters", n) for i, li in enumerate(listeners) for n in li.filters]
    named += [(f"filter_rule[{i}].filters", n) for i, r in enumerate(rules)
              for n in r.filters or ()]
    named += [(f"filters.{n}", n) for n in settings]
    done: set[str] = set()
    for setting, name in named:
        if name in done:
            continue
        done.add(name)
        try:
            create(name, settings.get(name, {}))
        except FilterSetupError as exc:
            raise ConfigError(setting, str(exc)) from None
