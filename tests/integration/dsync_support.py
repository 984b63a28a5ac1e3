"""Helpers for the dsync migration tests: a destination Dovecot that ``doveadm backup`` fills
over imapc, an item-by-item picture of an account read over IMAP, and a spy on the commands
the proxy sends upstream.

Debian's ``doveadm`` (in dovecot-core, which dovecot-imapd depends on) runs with the
destination's own generated ``dovecot.conf`` (``doveadm -c``); the imapc settings that point
it at the proxy are given as ``-o`` overrides, exactly as docs/migration-dsync.md describes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imapproxy.devserver import DovecotServer, imap_utf7_encode
from imapproxy.protocol.response import (
    DataResponse,
    StatusResponse,
    fetch_attributes,
    parse_response,
)
from imapproxy.protocol.tokens import Atom, ParenList, TokenReader, is_nil, string_value
from imapproxy.upstream.connection import UpstreamConnection

from .conftest import RawClient, quote

# doveadm comes with dovecot-core, which dovecot-imapd needs: where the Dovecot fixtures run
# (and do not skip), doveadm is there too.
DOVEADM = shutil.which("doveadm") or next(
    (p for p in ("/usr/bin/doveadm", "/usr/sbin/doveadm") if Path(p).is_file()), None)
DSYNC_TIMEOUT = 60.0  # seconds for one doveadm run
# What Dovecot's migration docs suggest, plus modseq: MODSEQs are then read from the source.
IMAPC_FEATURES = "rfc822.size fetch-headers modseq"


# --- running doveadm ------------------------------------------------------------------------


@dataclass(frozen=True)
class DsyncRun:
    returncode: int
    stderr: str
    seconds: float


def dsync_command(destination: DovecotServer, user: str, *, imapc_host: str, imapc_port: int,
                  imapc_user: str, imapc_password: str, features: str = IMAPC_FEATURES,
                  mode: tuple[str, ...] = ("backup", "-R"),
                  settings: dict[str, str] | None = None) -> list[str]:
    """The doveadm command line that copies *imapc_user*'s account (read over IMAP from
    imapc_host:imapc_port) into *user* on *destination*; *mode* is ``backup -R`` or
    ``sync -1 -R`` (one-way, from imapc to the destination); *settings* add or replace
    ``-o`` overrides (``imapc_master_user``, ``imapc_ssl``)."""
    assert DOVEADM is not None, "doveadm not found (Debian package dovecot-core)"
    options = {
        "imapc_host": imapc_host, "imapc_port": str(imapc_port), "imapc_ssl": "no",
        "imapc_user": imapc_user, "imapc_password": imapc_password,
        "imapc_features": features, "mail_prefetch_count": "20", "mail_fsync": "never",
        **(settings or {}),
    }
    overrides = [arg for name, value in options.items() for arg in ("-o", f"{name}={value}")]
    return [DOVEADM, "-c", str(destination.config_file), *overrides, *mode, "-u", user,
            "imapc:"]


def run_dsync(command: list[str]) -> DsyncRun:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=DSYNC_TIMEOUT,
                            check=False)
    return DsyncRun(result.returncode, result.stderr, time.monotonic() - started)


class MasterUserDovecot(DovecotServer):
    """A test Dovecot that also has master users (``add_master``): a master logs in as any
    user with ``AUTHENTICATE PLAIN`` (authorization identity = the user), as imapc does with
    ``imapc_master_user``."""

    @property
    def masters_file(self) -> Path:
        return self.base_dir / "masters"

    def add_master(self, name: str, password: str) -> None:
        with self.masters_file.open("a", encoding="utf-8") as out:
            out.write(f"{name}:{{PLAIN}}{password}\n")

    def _config_text(self) -> str:
        self.masters_file.touch()
        return super()._config_text() + f"""
passdb {{
  driver = passwd-file
  master = yes
  args = scheme=PLAIN {self.masters_file}
}}
"""


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """(cert.pem, key.pem) for 127.0.0.1 / localhost, for the proxy's TLS listeners."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-nodes", "-days", "2",
         "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30)
    return cert, key


def unchrooted(destination: DovecotServer, user: str) -> dict[str, str]:
    """doveadm overrides that write the destination's Maildir without the chroot the test
    Dovecot uses when run as root: a chrooted dsync cannot load Dovecot's TLS module
    (/usr/lib/dovecot/modules is outside the chroot). The path is the one the destination
    serves (home = mail_dir/USER); *destination* must then live in a directory the mail
    user can traverse."""
    return {"mail_chroot": "",
            "mail_location": f"maildir:{destination.mail_dir}/{user}/Maildir:LAYOUT=fs"}


# --- an account, item by item ------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    flags: frozenset[str]
    internaldate: str  # as the server writes it (both sides store Maildir: same zone)
    body: bytes
    modseq: int


@dataclass
class Mailbox:
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: dict[int, Message] = field(default_factory=dict)  # by UID

    def state(self) -> dict[int, tuple[frozenset[str], str, bytes]]:
        """Everything a migration must keep per message (MODSEQs are compared apart)."""
        return {uid: (m.flags, m.internaldate, m.body) for uid, m in self.messages.items()}


@dataclass
class Account:
    mailboxes: dict[str, Mailbox]  # selectable mailboxes, by name as the server sends it
    listed: dict[str, frozenset[str]]  # every LIST entry -> its attributes
    subscribed: frozenset[str]

    @property
    def size(self) -> int:
        return sum(len(m.body) for box in self.mailboxes.values() for m in box.messages.values())


def read_account(host: str, port: int, user: str, password: str) -> Account:
    """Every mailbox, subscription and message of an account, read over IMAP (EXAMINE: the
    reading changes nothing)."""
    client = RawClient(host, port)
    try:
        client.login(user, password)
        client.ok("ENABLE CONDSTORE")
        listed = {name: attrs for name, attrs in _list(client, 'LIST "" "*"')}
        subscribed = frozenset(name for name, _ in _list(client, 'LSUB "" "*"'))
        mailboxes = {name: _read_mailbox(client, name) for name, attrs in listed.items()
                     if "\\NOSELECT" not in attrs and "\\NONEXISTENT" not in attrs}
        client.ok("LOGOUT")
        return Account(mailboxes, listed, subscribed)
    finally:
        client.close()


def _list(client: RawClient, command: str) -> Iterator[tuple[str, frozenset[str]]]:
    for raw in client.ok(command):
        response = parse_response(raw)
        if isinstance(response, DataResponse) and response.name in ("LIST", "LSUB"):
            attrs, _sep, name = response.args
            assert isinstance(attrs, ParenList)
            yield (string_value(name).decode(),
                   frozenset(a.upper() for a in attrs.items if isinstance(a, Atom)))


def _read_mailbox(client: RawClient, name: str) -> Mailbox:
    codes: dict[str, int] = {}
    for raw in client.ok(f"EXAMINE {quote(name)}"):
        response = parse_response(raw)
        if isinstance(response, StatusResponse) and response.code \
                and response.code_data and response.code_data.isdigit():
            codes[response.code] = int(response.code_data)
    box = Mailbox(codes["UIDVALIDITY"], codes["UIDNEXT"], codes.get("HIGHESTMODSEQ", 0))
    untagged = client.ok("UID FETCH 1:* (UID FLAGS INTERNALDATE MODSEQ BODY.PEEK[])") \
        if box.uidnext > 1 else []
    for raw in untagged:
        values = fetch_attributes(parse_response(raw))
        if values is None:
            continue
        flags, modseq = values["FLAGS"], values["MODSEQ"]
        assert isinstance(flags, ParenList) and isinstance(modseq, ParenList)
        uid = int(string_value(values["UID"]))
        box.messages[uid] = Message(
            flags=frozenset(string_value(f).decode() for f in flags.items
                            if not is_nil(f)) - {"\\Recent"},  # a session's, not the box's
            internaldate=string_value(values["INTERNALDATE"]).decode(),
            body=string_value(values["BODY[]"]),
            modseq=int(string_value(modseq.items[0])),
        )
    return box


def mailbox_name(name: str) -> str:
    """How a server names *name* in LIST: modified UTF-7."""
    return imap_utf7_encode(name)


# --- what the proxy asks the upstream ------------------------------------------------------


_SELECT = re.compile(rb"^\S+ (?:SELECT|EXAMINE) (\"(?:[^\"\\]|\\.)*\"|\S+)", re.IGNORECASE)
_BODY_FETCH = re.compile(rb"^\S+ UID FETCH (\S+) \([^)]*BODY\.PEEK\[\]", re.IGNORECASE)


class UpstreamSpy:
    """Records every line the proxy writes to any upstream connection (a spy on
    ``UpstreamConnection._write``; the upstream is the real Dovecot)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lines: list[tuple[int, bytes]] = []  # (connection id, line)
        original = UpstreamConnection._write

        def write(conn: UpstreamConnection, data: bytes) -> None:
            self.lines.append((id(conn), bytes(data)))
            original(conn, data)

        monkeypatch.setattr(UpstreamConnection, "_write", write)

    def clear(self) -> None:
        self.lines.clear()

    @property
    def commands(self) -> int:
        return len(self.lines)

    def bodies_fetched(self) -> dict[str, set[int]]:
        """mailbox (as sent upstream) -> UIDs whose whole body was fetched upstream."""
        selected: dict[int, str] = {}
        out: dict[str, set[int]] = {}
        for conn, line in self.lines:
            if m := _SELECT.match(line):
                name = TokenReader(m.group(1)).read_token()
                selected[conn] = string_value(name).decode()
            elif m := _BODY_FETCH.match(line):
                out.setdefault(selected[conn], set()).update(_uid_set(m.group(1).decode()))
        return out


def _uid_set(text: str) -> set[int]:
    uids: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition(":")
        uids.update(range(int(low), int(high or low) + 1))
    return uids
