"""The migration's errors: what failed, and whether a new connection may help."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .account import ImapAccount


class MigrateError(Exception):
    """A migration step failed; str() says which and why."""


class PartialWrite(MigrateError):
    """Some messages of a batch were written (``written``), others refused (``failed``)."""

    def __init__(self, written: dict[int, int], failed: dict[int, str]) -> None:
        super().__init__(f"{len(failed)} messages refused")
        self.written = written
        self.failed = failed


class ConnectionLost(MigrateError):
    """The connection of ``account`` broke: its state is unknown, a new one is needed."""

    def __init__(self, message: str, account: ImapAccount) -> None:
        super().__init__(message)
        self.account = account
