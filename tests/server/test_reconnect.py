"""Which commands a lost upstream may re-run, and credentials that never show."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from imapproxy.protocol.command import Command
from imapproxy.server.reconnect import Credentials, _retryable


def test_credentials_never_show_the_password() -> None:
    creds = Credentials(b"bob", b"hunter2-secret", b"")
    assert "hunter2" not in repr(creds) and "hunter2" not in str(creds)
    assert "bob" in repr(creds)


@pytest.mark.parametrize(("name", "answered", "expected"), [
    ("FETCH", True, True), ("LIST", True, True), ("STATUS", False, True),
    ("SELECT", True, True), ("EXAMINE", False, True), ("LSUB", True, True),
    ("SEARCH", False, True), ("SEARCH", True, False),
    ("APPEND", False, False), ("COPY", False, False), ("MOVE", False, False),
    ("EXPUNGE", False, False), ("STORE", False, False), ("IDLE", False, False),
])
def test_only_idempotent_reads_are_retried(name: str, answered: bool, expected: bool) -> None:
    session = SimpleNamespace(credentials=Credentials(b"bob"))
    assert _retryable(session, Command("t", name), answered=answered) is expected  # type: ignore[arg-type]


def test_nothing_is_retried_without_credentials() -> None:
    session = SimpleNamespace(credentials=None)
    assert not _retryable(session, Command("t", "FETCH"), answered=False)  # type: ignore[arg-type]
