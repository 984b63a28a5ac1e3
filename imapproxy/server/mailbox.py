"""What the session knows of its selected mailbox, learnt from the upstream's SELECT answer.

The upstream stays the authority: this only records the name, UIDVALIDITY and access the
upstream reported, to key cached content (mailbox, UIDVALIDITY, UID)."""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.response import DataResponse, Response, StatusResponse
from ..protocol.tokens import Atom, ParenList


@dataclass
class SelectedMailbox:
    name: bytes
    read_only: bool
    uidvalidity: int | None = None
    exists: int | None = None  # message count, kept from EXISTS / EXPUNGE / VANISHED

    def observe(self, response: Response | None) -> None:
        """Take what matters from one upstream response (SELECT answer, or any later one)."""
        if isinstance(response, DataResponse):
            self._observe_data(response)
            return
        if not isinstance(response, StatusResponse):
            return
        if response.code == "UIDVALIDITY" and response.code_data and \
                response.code_data.strip().isdigit():
            self.uidvalidity = int(response.code_data)
        elif response.code == "READ-ONLY":
            self.read_only = True
        elif response.code == "READ-WRITE":
            self.read_only = False

    def _observe_data(self, response: DataResponse) -> None:
        if response.name == "EXISTS" and response.number is not None:
            self.exists = response.number
        elif self.exists is None:
            return
        elif response.name == "EXPUNGE" and response.number is not None:
            self.exists = max(0, self.exists - 1)
        elif response.name == "VANISHED" and response.args and \
                not isinstance(response.args[0], ParenList):  # (EARLIER) changes nothing now
            last = response.args[-1]
            if isinstance(last, Atom):
                self.exists = max(0, self.exists - set_size(last.value))


def set_size(uid_set: str) -> int:
    """How many numbers a set like ``3,5:7`` names (no ``*``: VANISHED sets are explicit)."""
    total = 0
    for part in uid_set.split(","):
        low, _, high = part.partition(":")
        if low.isdigit() and (not high or high.isdigit()):
            total += abs(int(high or low) - int(low)) + 1
    return total
