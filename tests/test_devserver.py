"""The test harness itself: imapproxy.devserver against the real Dovecot, and tests/mailgen."""

from __future__ import annotations

import contextlib
import email
import email.policy
import imaplib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from email.message import Message
from pathlib import Path

import pytest
from conftest import Account, make_account, require_dovecot
from mailgen import FLAGS_CYCLE, corpus_messages, internal_date, messages, seed_mailbox

from imapproxy.devserver import DovecotError, DovecotServer, imap_utf7_encode

TIMEOUT = 10.0

# Extensions the proxy relies on; Dovecot 2.3 advertises all of them after login.
AFTER_LOGIN = {
    "IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC", "SPECIAL-USE", "LITERAL+",
    "NAMESPACE", "ID", "ENABLE", "UNSELECT", "CHILDREN", "LIST-EXTENDED", "LIST-STATUS",
    "SASL-IR",
}
# In Dovecot 2.3.19's greeting: exactly these plus LOGIN-REFERRALS (no STARTTLS without ssl,
# no LOGINDISABLED since plaintext auth is allowed).
BEFORE_LOGIN = {
    "IMAP4REV1", "SASL-IR", "ID", "ENABLE", "IDLE", "LITERAL+", "AUTH=PLAIN", "AUTH=LOGIN",
}


def login(account: Account) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(account.host, account.port, timeout=TIMEOUT)
    imap.login(account.user, account.password)
    return imap


def caps_of(line: bytes) -> set[str]:
    return {cap.upper() for cap in line.decode().split()}


# --- start, greeting, capabilities, login ----------------------------------------------------


def test_greeting_and_capabilities_before_login(dovecot: DovecotServer) -> None:
    with socket.create_connection((dovecot.host, dovecot.port), timeout=TIMEOUT) as sock:
        greeting = sock.recv(4096)
    match = re.match(rb"\* OK \[CAPABILITY ([^\]]*)\]", greeting)
    assert match, greeting
    caps = caps_of(match.group(1))
    assert caps >= BEFORE_LOGIN, BEFORE_LOGIN - caps
    assert not caps & {"STARTTLS", "LOGINDISABLED"}


def test_capabilities_after_login(imap_direct: imaplib.IMAP4) -> None:
    typ, data = imap_direct.capability()
    assert typ == "OK"
    caps = caps_of(data[-1])
    assert caps >= AFTER_LOGIN, AFTER_LOGIN - caps
    assert "LOGINDISABLED" not in caps


def test_wrong_password_and_unknown_user_fail(dovecot: DovecotServer, account: Account) -> None:
    for user, password in ((account.user, "wrong"), ("nosuchuser", "x")):
        imap = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=TIMEOUT)
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login(user, password)
        imap.shutdown()


def test_authenticate_plain_with_sasl_ir(account: Account) -> None:
    imap = imaplib.IMAP4(account.host, account.port, timeout=TIMEOUT)
    typ, _ = imap.authenticate(
        "PLAIN", lambda _: f"\0{account.user}\0{account.password}".encode())
    assert typ == "OK"
    imap.logout()


def test_add_user_while_running_is_seen_at_once(dovecot: DovecotServer) -> None:
    # Dovecot stats a passwd-file at most once a second: one file per user makes every new
    # user usable immediately, even right after another login.
    accounts = [make_account(dovecot) for _ in range(3)]
    for acct in accounts:
        login(acct).logout()
        newer = make_account(dovecot)
        login(newer).logout()
    for acct in accounts:  # the earlier ones still work
        login(acct).logout()


def test_add_user_rejects_unusable_names(dovecot: DovecotServer) -> None:
    for name in ("", "a b", "a:b", "../x", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            dovecot.add_user(name, "pw")
    with pytest.raises(ValueError):
        dovecot.add_user("fine", "pass:word")


def test_special_use_mailboxes_exist_and_are_subscribed(imap_direct: imaplib.IMAP4) -> None:
    typ, data = imap_direct.list()
    assert typ == "OK"
    listing = b"\n".join(d for d in data if isinstance(d, bytes)).decode()
    for name in ("Drafts", "Sent", "Trash", "Junk"):
        assert re.search(rf'\(.*\\{name}.*\) "/" {name}$', listing, re.MULTILINE), listing
    typ, data = imap_direct.lsub()
    subscribed = b"\n".join(d for d in data if isinstance(d, bytes)).decode()
    for name in ("Drafts", "Sent", "Trash", "Junk"):
        assert subscribed.count(f'"/" {name}') == 1, subscribed


def test_namespace_and_hierarchy(imap_direct: imaplib.IMAP4) -> None:
    typ, data = imap_direct.namespace()
    assert typ == "OK" and data[0] == b'(("" "/")) NIL NIL'
    for name in ("a.b", "a.b/c", "Lists/python"):  # dots are fine (Maildir LAYOUT=fs)
        assert imap_direct.create(f'"{name}"')[0] == "OK", name


# --- APPEND and FETCH ------------------------------------------------------------------------


_FETCH_HEAD = re.compile(
    rb"(\d+) \(UID (\d+) FLAGS \(([^)]*)\) INTERNALDATE \"([^\"]+)\" BODY\[\] \{(\d+)\}$")


def fetch_all(imap: imaplib.IMAP4, mailbox: str) -> list[tuple[int, set[str], datetime, bytes]]:
    """(uid, flags without \\Recent, internaldate, body) of every message in *mailbox*."""
    typ, _ = imap.select(f'"{mailbox}"', readonly=True)
    assert typ == "OK"
    typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
    assert typ == "OK"
    out = []
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, body = item
        match = _FETCH_HEAD.match(head)
        assert match, head
        assert int(match.group(5)) == len(body)
        flags = set(match.group(3).decode().split()) - {"\\Recent"}
        when = datetime.strptime(match.group(4).decode(), "%d-%b-%Y %H:%M:%S %z")
        out.append((int(match.group(2)), flags, when, body))
    return out


def test_seed_mailbox_round_trips_every_message_byte_for_byte(
        imap_direct: imaplib.IMAP4) -> None:
    msgs = messages()
    uids = seed_mailbox(imap_direct, "Corpus", msgs)
    assert uids == list(range(1, len(msgs) + 1))
    fetched = fetch_all(imap_direct, "Corpus")
    assert len(fetched) == len(msgs)
    for index, (uid, flags, when, body) in enumerate(fetched):
        assert uid == uids[index]
        assert body == msgs[index], f"message {index} differs"
        assert flags == set(FLAGS_CYCLE[index % len(FLAGS_CYCLE)].split())
        expected = datetime.strptime(internal_date(index).strip('"'), "%d-%b-%Y %H:%M:%S %z")
        assert when == expected


def test_append_helper_creates_mailbox_with_flags_and_date(
        dovecot: DovecotServer, account: Account) -> None:
    mailbox = "Ärchiv/2024 Q1"  # non-ASCII and a space: modified UTF-7, quoted
    message = b"From: a@example.org\r\nSubject: hello\r\n\r\nbody\r\n"
    dovecot.append(account.user, account.password, mailbox, message,
                   flags="\\Seen $Label1", date="04-Mar-2024 09:30:00 +0100")
    dovecot.append(account.user, account.password, mailbox, message)  # exists: no CREATE
    dovecot.append(account.user, account.password, "INBOX", message,
                   date='"01-Jan-2020 00:00:00 +0000"')  # already quoted: fine too
    imap = login(account)
    try:
        fetched = fetch_all(imap, imap_utf7_encode(mailbox))
        assert [body for *_, body in fetched] == [message, message]
        assert fetched[0][1] == {"\\Seen", "$Label1"}
        assert fetched[0][2] == datetime.strptime("04-Mar-2024 09:30:00 +0100",
                                                  "%d-%b-%Y %H:%M:%S %z")
        assert fetched[1][1] == set()
        assert len(fetch_all(imap, "INBOX")) == 1
    finally:
        imap.logout()


def test_imap_utf7_encode() -> None:
    assert imap_utf7_encode("INBOX") == "INBOX"
    assert imap_utf7_encode("Ärchiv") == "&AMQ-rchiv"
    assert imap_utf7_encode("R&D") == "R&-D"
    assert imap_utf7_encode("日本語") == "&ZeVnLIqe-"
    assert imap_utf7_encode("Entwürfe/Grüße") == "Entw&APw-rfe/Gr&APwA3w-e"


# --- IDLE ------------------------------------------------------------------------------------


def test_idle_sees_new_mail_quickly(dovecot: DovecotServer, account: Account) -> None:
    imap = login(account)
    try:
        assert imap.select("INBOX")[0] == "OK"
        tag = b"IDLE1"  # imaplib has no IDLE: speak it by hand
        imap.send(tag + b" IDLE\r\n")
        assert imap.readline().startswith(b"+ ")
        started = time.monotonic()
        dovecot.append(account.user, account.password, "INBOX", b"Subject: new\r\n\r\nx\r\n")
        assert imap.sock is not None
        imap.sock.settimeout(TIMEOUT)
        line = imap.readline()
        while line.startswith(b"* OK"):  # "Still here"
            line = imap.readline()
        assert line == b"* 1 EXISTS\r\n"
        assert time.monotonic() - started < 5  # mailbox_idle_check_interval = 1 secs
        imap.send(b"DONE\r\n")
        line = imap.readline()
        while line.startswith(b"*"):
            line = imap.readline()
        assert line.startswith(tag + b" OK")
    finally:
        with contextlib.suppress(Exception):
            imap.logout()


# --- lifecycle, TLS, errors ------------------------------------------------------------------


def test_restart_keeps_users_and_mail(tmp_path: Path) -> None:
    require_dovecot()
    server = DovecotServer(tmp_path / "dc")
    with server:
        assert server.running
        server.add_user("keeper", "pw1")
        server.append("keeper", "pw1", "Kept", b"Subject: kept\r\n\r\nx\r\n", flags="\\Flagged")
    assert not server.running
    server.stop()  # idempotent
    with server:
        imap = server.connect("keeper", "pw1")
        try:
            fetched = fetch_all(imap, "Kept")
            assert [(flags, body) for _, flags, _, body in fetched] == [
                ({"\\Flagged"}, b"Subject: kept\r\n\r\nx\r\n")]
        finally:
            imap.logout()
    server.stop()


def test_tls_imaps_and_starttls(tmp_path: Path) -> None:
    require_dovecot()
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    with DovecotServer(tmp_path / "tls", tls=True) as server:
        assert server.ssl_port and server.cert_file and server.cert_file.exists()
        server.add_user("tlsuser", "pw")
        imaps = imaplib.IMAP4_SSL(server.host, server.ssl_port, ssl_context=server.ssl_context(),
                                  timeout=TIMEOUT)
        imaps.login("tlsuser", "pw")
        imaps.logout()
        plain = server.connect()
        assert "STARTTLS" in plain.capabilities
        plain.starttls(server.ssl_context())
        plain.login("tlsuser", "pw")
        plain.logout()


def test_start_failure_raises_with_log_tail(tmp_path: Path) -> None:
    require_dovecot()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = DovecotServer(tmp_path / "busy", port=busy.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(DovecotError, match="Address already in use"):
            server.start()
        assert time.monotonic() - started < 10
        assert not server.running
        server.stop()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to run as another user")
def test_works_as_a_normal_user(tmp_path: Path) -> None:
    """As root we run imap-login as dovenull and mail as nobody (chrooted); as a normal user
    everything runs as that user. Check the second case by becoming nobody."""
    require_dovecot()
    import pwd

    nobody = pwd.getpwnam("nobody")
    base = Path("/tmp") / f"imapproxy-nonroot-{os.getpid()}"
    base.mkdir()
    try:
        os.chown(base, nobody.pw_uid, nobody.pw_gid)
        script = (
            "import sys; from pathlib import Path; from imapproxy.devserver import DovecotServer\n"
            "with DovecotServer(Path(sys.argv[1])) as s:\n"
            "    s.add_user('u', 'p')\n"
            "    s.append('u', 'p', 'Box', b'Subject: x\\r\\n\\r\\ny\\r\\n')\n"
            "    i = s.connect('u', 'p'); i.select('Box')\n"
            "    print(i.fetch('1', 'BODY[]')); i.logout()\n"
        )
        repo = Path(__file__).resolve().parents[1]
        result = subprocess.run(
            ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
             "--clear-groups", sys.executable, "-c", script, str(base / "dc")],
            check=False, capture_output=True, text=True, timeout=60, cwd="/",
            env={**os.environ, "PYTHONPATH": str(repo), "HOME": str(base)},
        )
        if result.returncode != 0 and "Permission denied" in result.stderr and "import" in (
                result.stderr):
            pytest.skip("the checkout is not readable by nobody")
        assert result.returncode == 0, result.stderr
        assert "Subject: x" in result.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- mailgen ---------------------------------------------------------------------------------


def test_mailgen_is_deterministic_and_crlf() -> None:
    first = messages(60, seed=3)
    assert first == messages(60, seed=3)
    assert first != messages(60, seed=4)
    assert len(messages()) == 200 + len(corpus_messages())
    for msg in messages():
        assert msg.endswith(b"\r\n")
        assert b"\0" not in msg
        bare = msg.replace(b"\r\n", b"")
        assert b"\r" not in bare and b"\n" not in bare
        assert max(len(line) for line in msg.split(b"\r\n")) <= 998


def test_mailgen_has_the_promised_shapes() -> None:
    msgs = messages(200)
    types: set[str] = set()
    depth = 0
    biggest_attachment = 0
    encoded_subjects = rfc2231 = no_content_type = eight_bit = 0
    for raw in msgs[:200]:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert not msg.defects, msg["Subject"]
        if "Content-Type" not in msg:
            no_content_type += 1
        if b"=?utf-8?" in raw.split(b"\r\n\r\n", 1)[0]:
            encoded_subjects += 1
        if b"filename*0*=" in raw:
            rfc2231 += 1
        if any(byte > 127 for byte in raw):
            eight_bit += 1
        stack: list[tuple[Message, int]] = [(msg, 0)]
        while stack:
            part, level = stack.pop()
            types.add(part.get_content_type())
            depth = max(depth, level)
            if part.is_multipart():
                for sub in part.get_payload():
                    assert isinstance(sub, Message)
                    stack.append((sub, level + 1))
            elif part.get_content_disposition() == "attachment":
                payload = part.get_payload(decode=True) or b""
                biggest_attachment = max(biggest_attachment, len(payload))
    assert {"text/plain", "text/html", "multipart/alternative", "multipart/mixed",
            "multipart/related", "message/rfc822", "application/octet-stream"} <= types
    assert depth >= 3
    assert 250_000 <= biggest_attachment <= 310_000
    assert encoded_subjects and rfc2231 and no_content_type and eight_bit
