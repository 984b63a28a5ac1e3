"""Hostile IMAP command streams for the network fuzz test, from a seeded ``random.Random``
(a failing run is replayed with its seed): valid commands, then mutated. What they hold:
literals (synchronising, LITERAL+, lying about their size, oversized), broken modified-UTF-7
mailbox names, huge sequence sets, deeply nested lists, binary junk and NUL bytes."""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass

BROKEN_UTF7 = [b"&Jjo", b"&-", b"&AOk", b"&ZeVnLIqe", b"&ZeVnLIqe-&", b"A&B", b"&" * 9,
               b"&AGE-", b"&2D3eAQ-", b"&,,,-", b"\xff\xfe", b"caf\xc3\xa9", b"INBOX/../x",
               b"%", b"*", b"INBOX&-&-"]
FETCH_ITEMS = [b"FLAGS", b"UID", b"BODY.PEEK[]", b"BODY[]", b"BODYSTRUCTURE", b"ENVELOPE",
               b"RFC822.SIZE", b"RFC822.HEADER", b"BINARY.PEEK[3]", b"BINARY.SIZE[2]",
               b"BODY.PEEK[1.MIME]", b"BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]<0.20>",
               b"BODY[TEXT]<5.10>", b"BINARY[2]<0.4>", b"BODY.PEEK[4.2.1]", b"BODY",
               b"INTERNALDATE", b"MODSEQ", b"ALL", b"FULL", b"BODY[0]", b"BINARY[1.2.3.4.5]"]


@dataclass(frozen=True)
class Segment:
    """Bytes to send; ``trickle``: one byte at a time (slow loris), ``wait``: read the
    answer (e.g. the ``+`` a synchronising literal needs) before going on."""

    data: bytes
    trickle: bool = False
    wait: bool = False


class HostileStreams:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.tag_number = 0

    def tag(self) -> bytes:
        self.tag_number += 1
        return b"f%d" % self.tag_number

    # --- pieces ------------------------------------------------------------------------------

    def sequence_set(self) -> bytes:
        r = self.rng
        choice = r.randrange(9)
        if choice == 0:
            return b"1:4294967295"
        if choice == 1:
            return b",".join(b"%d" % i for i in range(1, r.randrange(2, 5000)))
        if choice == 2:
            return b",".join([b"1:1048576"] * r.randrange(1, 400))
        if choice == 3:
            return r.choice([b"0", b"4294967296", b"-1", b"9" * 60, b"*:1", b"1:*", b"2,*"])
        return r.choice([b"1", b"1:*", b"2:3", b"*", b"1,3", b"3:1"])

    def mailbox(self) -> bytes:
        r = self.rng
        name = r.choice(BROKEN_UTF7 + [b"INBOX", b"fuzz", b"Fuzz/&AOk-t\xe9"])
        form = r.randrange(3)
        if form == 0 and all(32 < c != 127 and c not in b'(){%*"\\]' for c in name):
            return name
        if form == 1 and b"\0" not in name:
            return b'"' + name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        return b"{%d+}\r\n" % len(name) + name

    def nested(self) -> bytes:
        depth = self.rng.randrange(1, 300)
        close = depth if self.rng.random() < 0.7 else self.rng.randrange(depth + 1)
        return b"(" * depth + b"x" + b")" * close

    def junk(self) -> bytes:
        r = self.rng
        return r.randbytes(r.randrange(1, 200)).replace(b"XMARK", b"xmark")

    def literal(self, body: bytes) -> bytes:
        r = self.rng
        kind = r.randrange(6)
        if kind == 0:  # lies: announces more than follows, the next command is eaten
            return b"{%d}\r\n" % (len(body) + r.randrange(1, 40)) + body
        if kind == 1:
            return b"{%d}\r\n" % r.choice([10**9, 2**64, 10**25])
        if kind == 2:
            return b"~{%d+}\r\n" % len(body) + body
        sync = b"" if kind == 3 else b"+"
        return b"{%d%b}\r\n" % (len(body), sync) + body

    # --- commands ----------------------------------------------------------------------------

    def command(self, authenticated: bool) -> bytes:
        r = self.rng
        t = self.tag()
        if not authenticated and r.random() < 0.6:
            user = base64.b64encode(b"\0nobody\0" + r.randbytes(r.randrange(0, 20)))
            return t + r.choice([
                b" NOOP", b" CAPABILITY", b" ID " + self.nested(), b" STARTTLS",
                b" LOGIN " + self.mailbox() + b" " + self.literal(b"pw"),
                b" AUTHENTICATE PLAIN " + user, b" AUTHENTICATE PLAIN\r\n" + user,
                b" AUTHENTICATE X-UNKNOWN", b" LOGIN (a) b", b" SELECT INBOX",
            ]) + b"\r\n"
        items = b" ".join(r.sample(FETCH_ITEMS, r.randrange(1, 5)))
        uid = b"UID " if r.random() < 0.5 else b""
        if r.random() < 0.4:  # content FETCHes: the proxy's own code, and the user's mail
            return t + b" " + uid + b"FETCH " + self.sequence_set() + b" (" + items + b")\r\n"
        if r.random() < 0.05:  # a token the upstream refuses, then a literal holding a command
            inner = b"\r\n" + self.tag() + b" CREATE Smuggled\r\n"
            bad = r.choice([b"\xff", b'a["x"]', b"a[(]", b"caf\xc3\xa9", b"", b"a[{1}]"])
            literal = r.choice([b"~", b""]) + b"{%d+}\r\n" % len(inner) + inner
            return t + b" " + r.choice([b"SELECT ", b'LIST "" ', b"STATUS "]) + bad + b" " \
                + literal + b"\r\n"
        return t + b" " + r.choice([
            b"NOOP", b"CAPABILITY", b"SELECT INBOX", b"EXAMINE INBOX", b"SELECT " + self.mailbox(),
            b"LIST \"\" " + self.mailbox(), b"LSUB \"\" *", b"STATUS " + self.mailbox()
            + b" (MESSAGES UIDNEXT UIDVALIDITY)", b"CREATE " + self.mailbox(),
            b"DELETE " + self.mailbox(), b"RENAME " + self.mailbox() + b" " + self.mailbox(),
            b"SUBSCRIBE " + self.mailbox(), uid + b"FETCH " + self.sequence_set() + b" ("
            + items + b")", uid + b"FETCH " + self.sequence_set() + b" " + self.nested(),
            uid + b"SEARCH " + r.choice([b"ALL", b"TEXT XMARK", b"UID " + self.sequence_set(),
                                         b"CHARSET UTF-8 SUBJECT " + self.literal(b"\xc3\xa9"),
                                         self.nested()]),
            uid + b"STORE " + self.sequence_set() + b" +FLAGS (\\Flagged $Fuzz)",
            uid + b"COPY " + self.sequence_set() + b" " + self.mailbox(),
            b"APPEND " + self.mailbox() + b" (\\Seen) " + self.literal(
                b"Subject: fuzz\r\n\r\n" + self.junk()),
            b"IDLE\r\nDONE", b"IDLE\r\n" + self.junk(), b"ENABLE CONDSTORE QRESYNC",
            b"ID " + self.nested(), b"UNSELECT", b"CHECK", b"CLOSE", b"EXPUNGE",
            uid + b"MOVE " + self.sequence_set() + b" " + self.mailbox(), b"NAMESPACE",
            b"GETQUOTAROOT INBOX", b"X-UNKNOWN " + self.junk(),
        ]) + b"\r\n"

    # --- streams -----------------------------------------------------------------------------

    def stream(self, authenticated: bool) -> list[Segment]:
        """A few commands, some mutated, each its own segment (some trickled)."""
        r = self.rng
        segments: list[Segment] = []
        for _ in range(r.randrange(1, 8)):
            data = self.command(authenticated)
            if r.random() < 0.4:
                data = self.mutate(data)
            wait = b"}\r\n" in data and r.random() < 0.5
            segments.append(Segment(data, trickle=r.random() < 0.05, wait=wait))
        if r.random() < 0.1:
            segments.append(Segment(self.junk() + b"\r\n"))
        return segments

    def mutate(self, data: bytes) -> bytes:
        r = self.rng
        out = bytearray(data)
        for _ in range(r.randrange(1, 4)):
            if not out:
                break
            at = r.randrange(len(out))
            op = r.randrange(6)
            if op == 0:
                out[at] ^= 1 << r.randrange(8)
            elif op == 1:
                out[at:at] = r.choice([b"\0", b"\xff", b"(", b")", b"\"", b"{3}\r\n", b"\r\n",
                                       b"\n", b"\r", b"[", b"]", b" ", self.nested()])
            elif op == 2:
                del out[at:at + r.randrange(1, 10)]
            elif op == 3:
                out[at:at] = out[max(0, at - 20):at]
            elif op == 4:
                out[at:at] = self.junk()
            else:
                out = out.replace(b"\r\n", r.choice([b"\n", b"\r", b"\r\r\n"]), 1)
        return bytes(out).replace(b"XMARK", b"xmark")
