"""What an imapc client (Dovecot's dsync reading through the proxy, docs/migration-dsync.md)
may ask beyond what Dovecot 2.3's dsync sends: a QRESYNC resync, and Dovecot-private items the
proxy does not offer, which it must refuse cleanly (BAD, and the session goes on)."""

from __future__ import annotations

import imaplib
import re
from typing import Any

import pytest

from tests.mailgen import generated, seed_mailbox

from .conftest import TIMING, RawClient, RunningProxy, status_of


@pytest.fixture
def seeded(account: Any, imap_direct: imaplib.IMAP4) -> Any:
    seed_mailbox(imap_direct, "INBOX", generated(10))
    return account


def _same_answer(through: RawClient, direct: RawClient, command: str) -> list[bytes]:
    """Run *command* on both under one tag; the answers must be equal but for timings."""
    answers = [client.command(command, tag="q") for client in (through, direct)]
    got, want = ([TIMING.sub(b"", r) for r in (*untagged, tagged)] for untagged, tagged in answers)
    assert got == want, command
    return got


def test_qresync_resync_through_the_proxy_equals_dovecot(
        seeded: Any, proxy: RunningProxy, raw_factory: Any) -> None:
    """ENABLE QRESYNC, SELECT (QRESYNC (uidvalidity modseq)) with VANISHED (EARLIER), then
    content by sequence number: the proxy's view of the mailbox must not take the EARLIER
    UIDs as expunges now."""
    setup = raw_factory(seeded.host, seeded.port)
    setup.login(seeded.user, seeded.password)
    selected = b"".join(setup.ok("SELECT INBOX (CONDSTORE)"))
    uidvalidity = re.search(rb"UIDVALIDITY (\d+)", selected)
    modseq = re.search(rb"HIGHESTMODSEQ (\d+)", selected)
    assert uidvalidity is not None and modseq is not None
    setup.ok("UID STORE 3:4 +FLAGS.SILENT (\\Deleted)")
    setup.ok("EXPUNGE")
    setup.ok("UID STORE 7 +FLAGS.SILENT (Work)")
    setup.ok("UNSELECT")

    through, direct = raw_factory(proxy.host, proxy.port), raw_factory(seeded.host, seeded.port)
    for client in (through, direct):
        client.login(seeded.user, seeded.password)
    _same_answer(through, direct, "ENABLE QRESYNC")
    answer = _same_answer(through, direct, f"SELECT INBOX (QRESYNC ({uidvalidity.group(1).decode()}"
                                           f" {modseq.group(1).decode()} 1:10))")
    assert b"* VANISHED (EARLIER) 3:4\r\n" in answer
    assert any(b"UID 7 " in r and b"Work" in r for r in answer)
    fetched = _same_answer(through, direct, "FETCH 3:5 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert [r.split(b" ", 5)[4] for r in fetched[:-1]] == [b"5", b"6", b"7"]  # the UIDs
    _same_answer(through, direct, "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")


@pytest.mark.parametrize("request_text", [
    "UID FETCH 1 (X-GUID)",  # Dovecot's message GUID: not advertised, imapc 2.3 never asks
    "UID FETCH 1 (UID X-SAVEDATE)",
    "UID FETCH 1 (X-GM-MSGID X-GM-LABELS)",  # imapc's gmail-migration: no X-GM-EXT-1 here
    "PROXYAUTH someone",  # imapc's proxyauth feature
])
def test_dovecot_private_requests_are_refused_cleanly(seeded: Any, proxy: RunningProxy,
                                                      raw_factory: Any, request_text: str) -> None:
    client = raw_factory(proxy.host, proxy.port)
    client.login(seeded.user, seeded.password)
    client.ok("EXAMINE INBOX")
    capabilities = b"".join(client.ok("CAPABILITY"))
    assert b"X-GM-EXT-1" not in capabilities and b"X-DOVECOT" not in capabilities
    _, tagged = client.command(request_text)
    assert status_of(tagged) == b"BAD", tagged
    assert client.ok("UID FETCH 1 (UID FLAGS)")  # the session goes on
