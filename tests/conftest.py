"""Shared fixtures: a real Dovecot for the whole session, and fresh accounts on it.

- ``dovecot`` (session): a started :class:`imapproxy.devserver.DovecotServer` in a tmp dir.
- ``account``: a new user with a unique name and password on that Dovecot (an ``Account``).
- ``imap_direct``: an ``imaplib.IMAP4`` logged in to Dovecot directly as ``account``.

Tests that use them are marked ``dovecot``. Without Dovecot installed they are skipped, except
in CI (the CI environment variable set), where a missing Dovecot is an error.
"""

from __future__ import annotations

import contextlib
import imaplib
import itertools
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from imapproxy.devserver import DovecotServer, find_dovecot

IMAP_TIMEOUT = 30.0  # seconds, for imaplib connections made by fixtures


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that (indirectly) uses the ``dovecot`` fixture with ``dovecot``, so
    ``-m "not dovecot"`` runs the rest."""
    for item in items:
        if "dovecot" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.dovecot)


# --- Dovecot ---------------------------------------------------------------------------------


def require_dovecot() -> None:
    """Skip when Dovecot is not installed, unless in CI, where that is a failure."""
    if find_dovecot() is not None:
        return
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail("CI is set but dovecot is not installed (apt install dovecot-imapd)",
                    pytrace=False)
    pytest.skip("dovecot is not installed (apt install dovecot-imapd)")


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    require_dovecot()
    server = DovecotServer(tmp_path_factory.mktemp("dovecot"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Account:
    user: str
    password: str
    host: str
    port: int


_account_numbers = itertools.count(1)


def make_account(server: DovecotServer) -> Account:
    """A new user on *server*, with a name no other test (or test run) uses."""
    user = f"user{next(_account_numbers)}-{secrets.token_hex(3)}"
    password = f"pw-{secrets.token_hex(6)}"
    server.add_user(user, password)
    return Account(user, password, server.host, server.port)


@pytest.fixture
def account(dovecot: DovecotServer) -> Account:
    return make_account(dovecot)


@pytest.fixture
def imap_direct(account: Account) -> Iterator[imaplib.IMAP4]:
    """imaplib logged in to Dovecot (not through the proxy) as ``account``."""
    imap = imaplib.IMAP4(account.host, account.port, timeout=IMAP_TIMEOUT)
    imap.login(account.user, account.password)
    yield imap
    with contextlib.suppress(Exception):
        imap.logout()
