"""Unit tests of the migration's pure parts: Gmail's folder choice on a real LIST answer,
the [THROTTLED] back-off, tolerant parsing, names, dates, sizes, progress, endpoints."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imapproxy.config import ConfigError
from imapproxy.migrate.account import THROTTLE_ROUNDS, ImapAccount
from imapproxy.migrate.endpoint import ImapEndpoint, MaildirEndpoint, parse_endpoint, read_password
from imapproxy.migrate.engine import batches
from imapproxy.migrate.errors import MigrateError
from imapproxy.migrate.gmail import choose_mailboxes, is_gmail, not_copied_yet
from imapproxy.migrate.maildir import MaildirFolder, internaldate_epoch, virtual_size
from imapproxy.migrate.model import MessageMeta, decode_mutf7, normalize_flags
from imapproxy.migrate.progress import Progress
from imapproxy.migrate.responses import Answer, meta_from, parse_list_entry, status_from
from imapproxy.protocol.command import Command
from imapproxy.protocol.response import DataResponse, StatusResponse, parse_response
from imapproxy.protocol.sets import uid_set
from imapproxy.upstream.backoff import Backoff
from imapproxy.upstream.connection import Received

GMAIL_LIST = b"""\
* LIST (\\HasNoChildren) "/" "INBOX"
* LIST (\\HasChildren \\Noselect) "/" "[Gmail]"
* LIST (\\All \\HasNoChildren) "/" "[Gmail]/All Mail"
* LIST (\\Drafts \\HasNoChildren) "/" "[Gmail]/Drafts"
* LIST (\\HasNoChildren \\Important) "/" "[Gmail]/Important"
* LIST (\\HasNoChildren \\Sent) "/" "[Gmail]/Sent Mail"
* LIST (\\HasNoChildren \\Junk) "/" "[Gmail]/Spam"
* LIST (\\Flagged \\HasNoChildren) "/" "[Gmail]/Starred"
* LIST (\\HasNoChildren \\Trash) "/" "[Gmail]/Trash"
* LIST (\\HasNoChildren) "/" "Work/Project &AOk-t&AOk-"
"""


def listed(text: bytes) -> list:  # type: ignore[type-arg]
    out = []
    for line in text.splitlines():
        response = parse_response(line + b"\r\n")
        assert isinstance(response, DataResponse)
        entry = parse_list_entry(response)
        assert entry is not None
        out.append(entry)
    return out


def test_gmail_skips_views_and_copies_all_mail_last() -> None:
    mailboxes = listed(GMAIL_LIST)
    assert is_gmail(frozenset({"IMAP4REV1", "X-GM-EXT-1"}), mailboxes)
    chosen, skipped = choose_mailboxes(mailboxes, [], gmail=True)
    assert [m.name for m in chosen] == [
        "INBOX", "[Gmail]/Drafts", "[Gmail]/Sent Mail", "[Gmail]/Spam", "[Gmail]/Trash",
        "Work/Project &AOk-t&AOk-", "[Gmail]/All Mail"]
    assert set(skipped) == {"[Gmail]/Important", "[Gmail]/Starred"}
    metas = [MessageMeta(1, (), gmail_id=7), MessageMeta(2, (), gmail_id=8),
             MessageMeta(3, ())]
    keep, left_out = not_copied_yet(metas, {7})
    assert [m.uid for m in keep] == [2, 3] and left_out == 1


def test_other_servers_keep_every_folder_and_patterns_use_decoded_names() -> None:
    mailboxes = listed(GMAIL_LIST)
    chosen, _ = choose_mailboxes(mailboxes, [], gmail=False)
    assert len(chosen) == 9 and chosen[-1].name == "Work/Project &AOk-t&AOk-"  # LIST order
    chosen, skipped = choose_mailboxes(mailboxes, ["Work/*été"], gmail=False)
    assert [m.display_name for m in chosen] == ["Work/Project été"]
    assert skipped["INBOX"] == "not matched by --mailboxes"


class ThrottlingConnection:
    """Answers ``NO Busy [THROTTLED]`` (code in the text only, as some servers do) *times*
    times, then OK."""

    capabilities = frozenset({"IMAP4REV1"})
    health = None

    def __init__(self, times: int) -> None:
        self.times = times
        self.calls = 0

    async def execute(self, command: Command) -> AsyncIterator[Received]:
        self.calls += 1
        if self.calls <= self.times:
            yield Received(b"", StatusResponse("U1", "NO", None, None, b"Busy [THROTTLED]"))
        else:
            yield Received(b"", DataResponse(None, "SEARCH", ()))
            yield Received(b"", StatusResponse("U1", "OK", None, None, b"done"))


async def test_throttled_in_the_text_is_retried_with_a_growing_back_off() -> None:
    conn = ThrottlingConnection(2)
    account = ImapAccount(conn, Backoff(initial=0.001, maximum=0.004))  # type: ignore[arg-type]
    answer = await account.command(Command("", "NOOP"))
    assert answer.ok and conn.calls == 3 and len(answer.data("SEARCH")) == 1
    assert account.backoff.delay() > 0 and conn.health is not None  # the connection waits it


async def test_endless_throttling_gives_up() -> None:
    conn = ThrottlingConnection(100)
    account = ImapAccount(conn, Backoff(0.001, 0.001))  # type: ignore[arg-type]
    with pytest.raises(MigrateError, match="still throttled"):
        await account.command(Command("", "NOOP"))
    assert conn.calls == THROTTLE_ROUNDS


def test_tolerant_parsing_of_odd_answers() -> None:
    # Exchange-style: NIL delimiter, quoted names; FETCH without UID; odd FLAGS.
    entry = parse_list_entry(DataResponse(None, "LIST", parse_response(
        b'* LIST (\\Marked) NIL "Top Level"\r\n').args))  # type: ignore[union-attr]
    assert entry is not None and entry.delimiter is None and entry.name == "Top Level"
    assert parse_list_entry(DataResponse(None, "LIST", ())) is None
    assert meta_from(parse_response(b"* 3 FETCH (FLAGS (\\Seen))\r\n")) is None
    meta = meta_from(parse_response(
        b'* 3 FETCH (UID 9 FLAGS (\\SEEN \\Recent $Junk) RFC822.SIZE 12 MODSEQ (77) '
        b'INTERNALDATE " 4-Mar-2024 09:30:00 +0100" X-GM-MSGID 1278455344230334865)\r\n'))
    assert meta == MessageMeta(9, ("$Junk", "\\Seen"), " 4-Mar-2024 09:30:00 +0100", 12, 77,
                               1278455344230334865)
    answer = Answer([parse_response(b"* OK [UIDVALIDITY 5] x\r\n"),
                     parse_response(b"* 4 EXISTS\r\n")], StatusResponse("U1", "OK"))
    status = status_from(answer)
    assert (status.uidvalidity, status.uidnext, status.highestmodseq, status.exists) == \
        (5, 0, None, 4)


def test_names_sets_dates_sizes() -> None:
    assert decode_mutf7("&AMk-t&AOk-") == "Été" and decode_mutf7("A&-B") == "A&B"
    assert uid_set([5, 1, 2, 3, 9, 10]) == "1:3,5,9:10"
    assert normalize_flags(["\\seen", "\\Recent", "kw", "kw"]) == ("\\Seen", "kw")
    assert internaldate_epoch("01-Jan-1970 01:00:00 +0100") == 0.0
    assert internaldate_epoch("garbage") is None
    assert virtual_size(b"a\nb\r\n") == 6
    metas = [MessageMeta(i, (), size=s) for i, s in enumerate([10, 10, 100, 5, 5, 5])]
    assert [[m.uid for m in b] for b in batches(metas, 3, 50)] == [[0, 1], [2], [3, 4, 5]]


def test_maildir_flag_letters_and_keywords_file(tmp_path: Path) -> None:
    folder = MaildirFolder(tmp_path, 1)
    assert folder.suffix(("$Label1", "\\Seen", "\\Draft", "Junk", "\\Deleted")) == ":2,DSTab"
    assert (tmp_path / "dovecot-keywords").read_text() == "0 $Label1\n1 Junk\n"
    again = MaildirFolder(tmp_path, 1)
    again.scan()
    assert again.suffix(("Junk", "\\Answered", "\\Flagged")) == ":2,FRb"


def test_progress_bar_on_a_terminal_and_lines_otherwise() -> None:
    tty, plain = io.StringIO(), io.StringIO()
    for stream, is_tty in ((tty, True), (plain, False)):
        progress = Progress(stream, tty=is_tty)
        progress.start(10, 2_000_000)
        progress.advance(5, 1_000_000)
        progress.finish()
    assert "\r\x1b[K[############------------] 5/10 messages, 1.0 MB/2.0 MB" in tty.getvalue()
    assert "progress: 5/10 messages" in plain.getvalue() and "\r" not in plain.getvalue()


def test_endpoints_and_passwords(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    imap = parse_endpoint("imaps://me%40example.org@mail.example:1993", "--from")
    assert isinstance(imap, ImapEndpoint) and imap.user == "me@example.org"
    assert (imap.upstream.host, imap.upstream.port, imap.upstream.security) == \
        ("mail.example", 1993, "implicit")
    assert isinstance(parse_endpoint("maildir:~/Mail", "--to"), MaildirEndpoint)
    with pytest.raises(ConfigError, match="password in the URL"):
        parse_endpoint("imap://me:secret@host", "--from")
    with pytest.raises(ConfigError):
        parse_endpoint("imap://host", "--from")
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    assert read_password("from", "NO_SUCH_VARIABLE_X", secret) == "s3cret"
    monkeypatch.setenv("MIGRATE_PW_TEST", "fromenv")
    assert read_password("from", "MIGRATE_PW_TEST", None) == "fromenv"
