"""Settings: dataclasses with embedded defaults, loaded from TOML and overridden by flags.

Every setting here is documented with its default in conf/imapproxy.toml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

TlsMode = Literal["none", "starttls", "implicit"]
UpstreamSecurity = Literal["plain", "starttls", "implicit"]


class ConfigError(Exception):
    """A setting is wrong; str() is one line naming the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"config error: {setting}: {problem}")
        self.setting = setting
        self.problem = problem


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


@dataclass(frozen=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 1143
    tls: TlsMode = "none"
    cert_file: Path | None = None
    key_file: Path | None = None
    allow_plaintext_auth: bool = False  # loopback clients are always allowed

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class LimitsConfig:
    max_line_length: int = 64 * 1024
    max_literal_size: int = 64 * 1024 * 1024
    preauth_timeout: float = 60.0
    idle_timeout: float = 30 * 60.0


@dataclass(frozen=True)
class Config:
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    listeners: tuple[ListenerConfig, ...] = (ListenerConfig(),)
    cache_dir: Path = Path(".")
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log_level: str = "INFO"
