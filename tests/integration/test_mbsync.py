"""A real third-party client: Debian's mbsync (isync) pulls a mailbox of ~200 mixed-MIME
messages through the proxy; the Maildir it writes equals the one a direct sync writes."""

from __future__ import annotations

import hashlib
import imaplib
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.mailgen import messages, seed_mailbox

MBSYNC = shutil.which("mbsync")
pytestmark = pytest.mark.skipif(MBSYNC is None, reason="Debian's isync (mbsync) not installed")


def _mbsyncrc(tmp: Path, name: str, host: str, port: int, user: str, password: str) -> Path:
    maildir = tmp / name
    maildir.mkdir()
    rc = tmp / f"{name}.mbsyncrc"
    rc.write_text(f"""\
IMAPAccount remote
Host {host}
Port {port}
User {user}
Pass {password}
SSLType None
AuthMechs LOGIN
PipelineDepth 8

IMAPStore remote
Account remote

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Near
Sync Pull
SyncState *
""")
    return rc


def _run_mbsync(rc: Path) -> subprocess.CompletedProcess[str]:
    assert MBSYNC is not None
    return subprocess.run([MBSYNC, "-c", str(rc), "-a"], capture_output=True, text=True,
                          timeout=120, check=False)


def _snapshot(maildir: Path) -> dict[str, Counter[tuple[str, str]]]:
    """Per folder: the multiset of (content hash, flags) of its messages. mbsync adds a
    random ``X-TUID:`` header line to each message it stores: that line is left out."""
    out: dict[str, Counter[tuple[str, str]]] = {}
    for cur_or_new in sorted(maildir.rglob("*")):
        if cur_or_new.name not in ("cur", "new") or not cur_or_new.is_dir():
            continue
        folder = str(cur_or_new.parent.relative_to(maildir))
        box = out.setdefault(folder, Counter())
        for msg in cur_or_new.iterdir():
            flags = msg.name.rpartition(":2,")[2] if ":2," in msg.name else ""
            data = re.sub(rb"(?m)^X-TUID: [^\n]*\n", b"", msg.read_bytes(), count=1)
            box[(hashlib.sha256(data).hexdigest(), flags)] += 1
    return out


def test_mbsync_through_proxy_equals_direct(tmp_path: Path, dovecot: Any, account: Any,
                                            proxy: Any) -> None:
    msgs = messages(200)
    imap = imaplib.IMAP4(account.host, account.port)
    imap.login(account.user, account.password)
    seed_mailbox(imap, "INBOX", msgs)
    seed_mailbox(imap, "Archive/2024", msgs[:15])
    imap.logout()

    direct = _run_mbsync(_mbsyncrc(tmp_path, "direct", account.host, account.port,
                                   account.user, account.password))
    assert direct.returncode == 0, direct.stderr
    through = _run_mbsync(_mbsyncrc(tmp_path, "proxied", proxy.host, proxy.port,
                                    account.user, account.password))
    assert through.returncode == 0, through.stderr

    want = _snapshot(tmp_path / "direct")
    got = _snapshot(tmp_path / "proxied")
    # mbsync itself skips corpus messages whose header has no end ("incomplete header"),
    # directly and through the proxy alike.
    skipped = direct.stderr.count("skipping")
    assert skipped <= 2 and through.stderr.count("skipping") == skipped
    assert sum(want["INBOX"].values()) == len(msgs) - skipped, direct.stderr
    assert any(flags for (_, flags) in want["INBOX"])  # the flag mix really reached mbsync
    assert got == want
