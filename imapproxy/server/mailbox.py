"""What the session knows of its selected mailbox, learnt from the upstream's SELECT answer.

The upstream stays the authority: this only records the name, UIDVALIDITY and access the
upstream reported, to key cached content (mailbox, UIDVALIDITY, UID)."""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.response import Response, StatusResponse


@dataclass
class SelectedMailbox:
    name: bytes
    read_only: bool
    uidvalidity: int | None = None

    def observe(self, response: Response | None) -> None:
        """Take what matters from one response of the SELECT/EXAMINE exchange."""
        if not isinstance(response, StatusResponse):
            return
        if response.code == "UIDVALIDITY" and response.code_data and \
                response.code_data.strip().isdigit():
            self.uidvalidity = int(response.code_data)
        elif response.code == "READ-ONLY":
            self.read_only = True
        elif response.code == "READ-WRITE":
            self.read_only = False
