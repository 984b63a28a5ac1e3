"""Where a migration reads from or writes to: an IMAP account URL or a Maildir path, and the
password for it (from an environment variable, a file or a prompt; never from the command
line, so it shows up neither in ``ps`` nor in shell history)."""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from ..config import ConfigError, UpstreamConfig, parse_upstream_url


@dataclass(frozen=True)
class ImapEndpoint:
    url: str  # without the user, for logs and state files
    user: str
    upstream: UpstreamConfig

    def __str__(self) -> str:
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{self.user}@{rest}"


@dataclass(frozen=True)
class MaildirEndpoint:
    path: Path

    def __str__(self) -> str:
        return f"maildir:{self.path}"


Endpoint = ImapEndpoint | MaildirEndpoint


def parse_endpoint(text: str, setting: str, *, ca_file: Path | None = None,
                   insecure: bool = False) -> Endpoint:
    """``imap[s]://USER@HOST[:PORT]``, ``imap+starttls://...`` or ``maildir:PATH``."""
    if text.startswith("maildir:"):
        path = text.removeprefix("maildir:")
        if not path:
            raise ConfigError(setting, "maildir: needs a path, e.g. maildir:/srv/mail/user")
        return MaildirEndpoint(Path(path).expanduser().resolve())
    scheme, sep, rest = text.partition("://")
    user, at, hostpart = rest.rpartition("@")
    if not sep or not at or not user:
        raise ConfigError(setting, f"{text!r}: expected imap[s]://USER@HOST[:PORT] or maildir:PATH")
    if ":" in user:
        raise ConfigError(setting, "a password in the URL is not accepted (see --help)")
    url = f"{scheme}://{hostpart}"
    host, port, security = parse_upstream_url(url, setting)
    upstream = UpstreamConfig(url=url, host=host, port=port, security=security,
                              ca_file=ca_file, insecure_skip_verify=insecure,
                              command_timeout=300.0, prefetch_count=0)
    return ImapEndpoint(url, unquote(user), upstream)


def read_password(side: str, env_var: str, password_file: Path | None) -> str:
    """The password for one side: *password_file* (first line), else $*env_var*, else a
    prompt when stdin is a terminal. Raises ConfigError when none is available."""
    if password_file is not None:
        try:
            return password_file.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError) as exc:
            raise ConfigError(f"--{side}-password-file", f"cannot read a password: {exc}") \
                from None
    value = os.environ.get(env_var)
    if value is not None:
        return value
    if sys.stdin.isatty():
        return getpass.getpass(f"Password for the {side} account: ")
    raise ConfigError(f"--{side}", f"no password: set {env_var} or use --{side}-password-file")
