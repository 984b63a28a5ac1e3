"""What the session knows of its selected mailbox, learnt from the upstream's answers.

The upstream stays the authority: this only records what the upstream reported (name,
UIDVALIDITY, access, message count, and the UIDs of messages 1..n as FETCH responses named
them), kept current from its EXISTS / EXPUNGE / VANISHED. With every UID known, a FETCH asking
only content of cached messages can be answered without an upstream round trip: nothing in
its answer is mailbox state the upstream could have changed without telling this session.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from ..protocol.command import Command
from ..protocol.response import (
    DataResponse,
    Response,
    StatusResponse,
    fetch_attributes,
    number_value,
    serialize_response,
)
from ..protocol.tokens import Atom, ParenList, Token


@dataclass
class SelectedMailbox:
    name: bytes
    read_only: bool
    uidvalidity: int | None = None
    exists: int | None = None  # message count, kept from EXISTS / EXPUNGE / VANISHED
    # UIDs of messages 1..len(uids), in order (sequence order is UID order). Complete when
    # its length is ``exists``; new messages (EXISTS) are unknown until a FETCH names them.
    uids: list[int] = field(default_factory=list)
    fresh: FreshState | None = None  # read with the SELECT; for the FETCH right after it
    flags_line: bytes | None = None  # the last ``* FLAGS (...)`` the upstream sent

    @property
    def uids_complete(self) -> bool:
        return self.exists is not None and len(self.uids) == self.exists

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

    def adopt_uids(self, uids: list[int]) -> None:
        """Every UID of the mailbox, in order, as a UID SEARCH ALL answered it."""
        if len(uids) == self.exists:
            self.uids = uids

    def learn(self, seq: int, uid: int) -> None:
        """The upstream said message ``seq`` has ``uid``."""
        if seq <= len(self.uids):
            if self.uids[seq - 1] != uid:  # not what we thought: forget from there on
                del self.uids[seq - 1:]
                self.uids.append(uid)
        elif seq == len(self.uids) + 1 and (not self.uids or uid > self.uids[-1]):
            self.uids.append(uid)

    def _observe_data(self, response: DataResponse) -> None:
        number = response.number
        if response.name == "FLAGS" and number is None:
            self.flags_line = serialize_response(response)
        elif response.name == "EXISTS" and number is not None:
            self.exists = number
            del self.uids[number:]
        elif response.name == "FETCH" and number is not None:
            uid = number_value((fetch_attributes(response) or {}).get("UID"))
            if uid is not None:
                self.learn(number, uid)
        elif self.exists is None:
            return
        elif response.name == "EXPUNGE" and number is not None:
            self.exists = max(0, self.exists - 1)
            if number <= len(self.uids):
                del self.uids[number - 1]
            else:
                del self.uids[self.exists:]
        elif response.name == "VANISHED" and response.args and \
                not isinstance(response.args[0], ParenList):  # (EARLIER) changes nothing now
            last = response.args[-1]
            if isinstance(last, Atom):
                self._vanished(last.value)

    def _vanished(self, uid_set: str) -> None:
        assert self.exists is not None
        gone = parse_set(uid_set, None)
        if gone is None:  # too large to expand: start learning afresh
            self.uids.clear()
            return
        complete = self.uids_complete
        before = len(self.uids)
        self.uids = [u for u in self.uids if u not in gone]
        # With every UID known the count is exact; otherwise each UID named had a message.
        removed = before - len(self.uids) if complete else len(gone)
        self.exists = max(0, self.exists - removed)
        del self.uids[self.exists:]

    def resolve(self, sequence_set: str, by_uid: bool) -> list[tuple[int, int]] | None:
        """(seq, uid) of the messages a FETCH set names, when every UID is known; None when
        the upstream must be asked (unknown UIDs, or a set the upstream should judge)."""
        if not self.uids_complete or self.exists is None:
            return None
        if by_uid:
            top = self.uids[-1] if self.uids else 0
            wanted = parse_set(sequence_set, top, ceiling=top + 1)
            if wanted is None:
                return None
            return [(i + 1, uid) for i, uid in enumerate(self.uids) if uid in wanted]
        numbers = parse_set(sequence_set, self.exists, ceiling=self.exists + 1)
        if numbers is None or not numbers or max(numbers) > self.exists or 0 in numbers:
            return None  # out of range: the upstream's error is the right answer
        return [(seq, self.uids[seq - 1]) for seq in sorted(numbers)]


FRESH_SECONDS = 1.0  # how long state read with a SELECT may answer a FETCH


@dataclass
class FreshState:
    """The upstream's answer to the FETCH pipelined behind a SELECT (select_state_count):
    sequence number -> (UID, state items). It answers the client's next FETCH if that comes
    within FRESH_SECONDS and asks nothing else; any other command drops it (session.py)."""

    names: frozenset[str]  # the items each row has
    rows: dict[int, tuple[int, dict[str, Token]]] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)

    def take(self, pairs: list[tuple[int, int]], names: frozenset[str]
             ) -> list[tuple[int, int, dict[str, Token]]] | None:
        """(seq, UID, items) of every (seq, UID) asked, or None when one is not known (or
        not under that UID), an item was not read, or the state is too old."""
        if not names <= self.names or time.monotonic() - self.at > FRESH_SECONDS:
            return None
        out = []
        for seq, uid in pairs:
            row = self.rows.get(seq)
            if row is None or row[0] != uid:
                return None
            out.append((seq, uid, dict(row[1])))
        return out


def select_state_command(last_exists: int | None, count: int) -> Command | None:
    """``FETCH n:* (UID FLAGS RFC822.SIZE INTERNALDATE)`` for the newest ``count`` messages
    of a mailbox that had ``last_exists`` last time (``n:*`` is valid whatever the count is
    now: beyond it, it names the last message)."""
    if not count or not last_exists:
        return None
    first = max(1, last_exists - count + 1)
    items = ParenList(tuple(Atom(name) for name in SELECT_STATE))
    return Command("", "FETCH", (Atom(f"{first}:*"), items))


SELECT_STATE = ("UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE")


class HasCapabilities(Protocol):
    @property
    def capabilities(self) -> frozenset[str]: ...


def all_uids_command(upstream: HasCapabilities) -> Command:
    """``UID SEARCH ALL``, in ESEARCH's compact form (``UID ALL 1:2000``) when offered."""
    args: tuple[Token, ...] = (Atom("ALL"),)
    if "ESEARCH" in upstream.capabilities:
        args = (Atom("RETURN"), ParenList((Atom("ALL"),)), Atom("ALL"))
    return Command("", "SEARCH", args, uid=True)


def uids_from_search(response: DataResponse) -> list[int] | None:
    """The UIDs of ``* SEARCH 1 2 3`` or ``* ESEARCH (TAG "x") UID ALL 1:3``, ascending."""
    atoms = [t.value for t in response.args if isinstance(t, Atom)]
    if response.name == "SEARCH":
        return sorted(int(a) for a in atoms if a.isdigit() and len(a) <= 10)
    upper = [a.upper() for a in atoms]
    if "ALL" not in upper:
        return []  # ESEARCH names no ALL when nothing matched
    index = upper.index("ALL") + 1
    numbers = parse_set(atoms[index], None) if index < len(atoms) else None
    return sorted(numbers) if numbers is not None else None


def changes_messages(response: Response | None) -> bool:
    """A response that adds or removes messages (so a UID list taken meanwhile may be off)."""
    return isinstance(response, DataResponse) and response.name in (
        "EXISTS", "EXPUNGE", "VANISHED")


MAX_SET = 1 << 20  # numbers a set may expand to before it is left to the upstream


def parse_set(text: str, star: int | None, ceiling: int | None = None) -> set[int] | None:
    """The numbers of an IMAP set (``1,3:5,7:*``); ``*`` is ``star``. None when it is not a
    plain set, uses ``*`` with no value for it, or is too large to expand here.
    ``ceiling``: every number above it is taken as ``ceiling`` (for callers that only care
    whether one is), so a huge range costs no more than the mailbox."""
    out: set[int] = set()
    work = 0  # numbers expanded so far, repeats included: "1:1000000,1:1000000,..." is costly
    for part in text.split(","):
        low, sep, high = part.partition(":")
        bounds: list[int] = []
        for bound in (low, high) if sep else (low,):
            if bound == "*" and star is not None:
                bounds.append(star)
            elif bound.isdigit() and bound.isascii() and len(bound) <= 10:  # an nz-number
                bounds.append(int(bound))
            else:
                return None
        a, b = min(bounds), max(bounds)
        if ceiling is not None:  # numbers above it all count as one: no need to expand them
            a, b = min(a, ceiling), min(b, ceiling)
        work += b - a + 1
        if work > MAX_SET:
            return None
        out.update(range(a, b + 1))
    return out

