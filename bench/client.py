"""A small, fast IMAP client on a blocking socket, for the benchmarks (not imaplib).

Responses are read from one ``bytearray`` buffer; a literal ``{n}`` is taken as n bytes in one
piece (a large literal is received straight into its own buffer with ``recv_into``), so the
client costs little next to what it measures. Only what the benchmarks need: LOGIN, SELECT,
UID SEARCH, FETCH of ``BODY.PEEK[]``, APPEND with LITERAL+, LOGOUT.

Modes of fetching every message of the selected mailbox:

- ``fetch_bulk()``: one ``FETCH 1:* BODY.PEEK[]``;
- ``fetch_naive(uids)``: one ``UID FETCH n BODY.PEEK[]`` per message, waiting for each answer
  (what a simple client or a sync script does);
- ``fetch_pipelined(uids, window)``: the same commands, up to ``window`` in flight.

Each returns a ``FetchResult``: the bodies by sequence number or UID, bytes and time taken.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field

_LITERAL_RE = re.compile(rb"~?\{(\d+)\+?\}\r\n$")
_FETCH_RE = re.compile(rb"^\* (\d+) FETCH ")
_UID_RE = re.compile(rb"[( ]UID (\d+)")
RECV = 1 << 20


class ImapError(Exception):
    pass


@dataclass
class Response:
    """One complete response: its text with each literal replaced by ``{n}``, and the
    literals in order."""

    text: bytes
    literals: list[bytes] = field(default_factory=list)

    @property
    def tag(self) -> bytes:
        return self.text.split(b" ", 1)[0]


@dataclass
class FetchResult:
    bodies: dict[int, bytes]  # by sequence number (bulk) or UID (naive, pipelined)
    bytes: int
    seconds: float
    commands: int
    complete: bool = True  # False when a time budget stopped it early


class Client:
    def __init__(self, host: str, port: int, timeout: float = 120.0) -> None:
        if host != "127.0.0.1":
            raise ValueError("the benchmark client only connects to 127.0.0.1")
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.tag_n = 0
        self.received = 0
        self.greeting = self.read_response()
        if not self.greeting.text.startswith(b"* OK"):
            raise ImapError(f"bad greeting {self.greeting.text[:200]!r}")

    # --- reading -----------------------------------------------------------------------------

    def _fill(self) -> None:
        data = self.sock.recv(RECV)
        if not data:
            raise ImapError("connection closed by the server")
        self.received += len(data)
        self.buf += data

    def _line(self) -> bytes:
        """Bytes up to and including the next CRLF."""
        if self.pos > (1 << 20):
            del self.buf[: self.pos]
            self.pos = 0
        start = self.pos
        search = start
        while True:
            end = self.buf.find(b"\r\n", search)
            if end >= 0:
                self.pos = end + 2
                return bytes(self.buf[start : end + 2])
            search = max(start, len(self.buf) - 1)
            self._fill()

    def _literal(self, n: int) -> bytes:
        have = len(self.buf) - self.pos
        if have >= n:
            data = bytes(self.buf[self.pos : self.pos + n])
            self.pos += n
            return data
        out = bytearray(n)
        view = memoryview(out)
        view[:have] = self.buf[self.pos :]
        del self.buf[:]
        self.pos = 0
        got = have
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                raise ImapError("connection closed inside a literal")
            got += k
            self.received += k
        return bytes(out)

    def read_response(self) -> Response:
        parts: list[bytes] = []
        literals: list[bytes] = []
        while True:
            line = self._line()
            m = _LITERAL_RE.search(line, max(0, len(line) - 24))
            if m is None:
                parts.append(line[:-2])
                return Response(b"".join(parts), literals)
            parts.append(line[: m.start()] + b"{%d}" % len(literals))
            literals.append(self._literal(int(m.group(1))))

    # --- commands ----------------------------------------------------------------------------

    def _tag(self) -> bytes:
        self.tag_n += 1
        return b"B%d" % self.tag_n

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, text: bytes) -> tuple[list[Response], Response]:
        """Send one command, return (untagged responses, tagged status)."""
        tag = self._tag()
        self.send(tag + b" " + text + b"\r\n")
        return self.until(tag)

    def until(self, tag: bytes) -> tuple[list[Response], Response]:
        untagged: list[Response] = []
        while True:
            r = self.read_response()
            if r.tag == tag:
                return untagged, r
            untagged.append(r)

    def ok(self, text: bytes) -> list[Response]:
        untagged, status = self.command(text)
        if not status.text.split(b" ", 2)[1:2] == [b"OK"]:
            raise ImapError(f"{text[:60]!r}: {status.text[:300]!r}")
        return untagged

    def login(self, user: str, password: str) -> None:
        self.ok(b"LOGIN " + _quote(user) + b" " + _quote(password))

    def select(self, mailbox: str = "INBOX") -> int:
        exists = 0
        for r in self.ok(b"SELECT " + _quote(mailbox)):
            m = re.match(rb"\* (\d+) EXISTS", r.text)
            if m:
                exists = int(m.group(1))
        return exists

    def uids(self) -> list[int]:
        for r in self.ok(b"UID SEARCH ALL"):
            if r.text.startswith(b"* SEARCH"):
                return [int(x) for x in r.text.split()[2:]]
        return []

    def logout(self) -> None:
        try:
            self.command(b"LOGOUT")
        except (ImapError, OSError):
            pass
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # --- fetching ----------------------------------------------------------------------------

    @staticmethod
    def _body_of(r: Response) -> tuple[int, int | None, bytes] | None:
        m = _FETCH_RE.match(r.text)
        if m is None or not r.literals:
            return None
        uid = _UID_RE.search(r.text)
        return int(m.group(1)), int(uid.group(1)) if uid else None, r.literals[-1]

    def fetch_bulk(self, what: bytes = b"1:*", keep: bool = True) -> FetchResult:
        start = time.perf_counter()
        tag = self._tag()
        self.send(tag + b" FETCH " + what + b" BODY.PEEK[]\r\n")
        bodies: dict[int, bytes] = {}
        total = 0
        while True:
            r = self.read_response()
            if r.tag == tag:
                if b" OK " not in r.text[: len(tag) + 4]:
                    raise ImapError(f"FETCH failed: {r.text[:300]!r}")
                break
            got = self._body_of(r)
            if got is not None:
                total += len(got[2])
                if keep:
                    bodies[got[0]] = got[2]
        return FetchResult(bodies, total, time.perf_counter() - start, 1)

    def fetch_naive(self, uids: list[int], budget: float | None = None,
                    keep: bool = True) -> FetchResult:
        """One ``UID FETCH n BODY.PEEK[]`` at a time, in the order given; stops early (and says
        so) when ``budget`` seconds have passed."""
        return self.fetch_pipelined(uids, 1, budget, keep)

    def fetch_pipelined(self, uids: list[int], window: int, budget: float | None = None,
                        keep: bool = True) -> FetchResult:
        start = time.perf_counter()
        deadline = None if budget is None else start + budget
        bodies: dict[int, bytes] = {}
        total = 0
        in_flight: list[bytes] = []
        sent = 0
        done = 0
        stopped = False
        while done < sent or (sent < len(uids) and not stopped):
            while not stopped and sent < len(uids) and len(in_flight) < window:
                tag = self._tag()
                self.send(tag + b" UID FETCH %d BODY.PEEK[]\r\n" % uids[sent])
                in_flight.append(tag)
                sent += 1
            r = self.read_response()
            if r.tag == in_flight[0]:
                if b" OK " not in r.text[: len(r.tag) + 4]:
                    raise ImapError(f"UID FETCH failed: {r.text[:300]!r}")
                in_flight.pop(0)
                done += 1
                if deadline is not None and time.perf_counter() > deadline:
                    stopped = True
                continue
            got = self._body_of(r)
            if got is not None and got[1] is not None:
                total += len(got[2])
                if keep:
                    bodies[got[1]] = got[2]
        return FetchResult(bodies, total, time.perf_counter() - start, done,
                           complete=done == len(uids))

    # --- appending ---------------------------------------------------------------------------

    def append_many(self, mailbox: str, messages: list[bytes], flags: list[bytes] | None = None,
                    dates: list[bytes] | None = None, window: int = 64) -> None:
        """APPEND with LITERAL+ (no continuation round trip), ``window`` commands in flight."""
        box = _quote(mailbox)
        pending: list[bytes] = []
        for i, msg in enumerate(messages):
            tag = self._tag()
            f = flags[i] if flags else b""
            d = (b' "' + dates[i] + b'"') if dates else b""
            self.send(b"%s APPEND %s (%s)%s {%d+}\r\n" % (tag, box, f, d, len(msg)) + msg
                      + b"\r\n")
            pending.append(tag)
            if len(pending) >= window:
                self._append_wait(pending.pop(0))
        for tag in pending:
            self._append_wait(tag)

    def _append_wait(self, tag: bytes) -> None:
        _, status = self.until(tag)
        if b" OK" not in status.text[: len(tag) + 4]:
            raise ImapError(f"APPEND failed: {status.text[:300]!r}")


def _quote(text: str) -> bytes:
    return b'"' + text.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
