"""Hypothesis strategies for the fuzz suite: valid IMAP built from the grammar, IMAP-flavoured
byte soup (valid pieces glued at random, which reaches deeper than uniform random bytes), and
ways to cut a byte stream into chunks."""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

from imapproxy.protocol.command import Command
from imapproxy.protocol.response import Continuation, DataResponse, Response, StatusResponse
from imapproxy.protocol.tokens import Atom, Literal, ParenList, Quoted, Token

# --- valid tokens, commands and responses ----------------------------------------------------

ATOM_CHARS = "abcxyzABCXYZ0129.-:*,$%&'!#/_=~<>\\]+\xe9\xff"
plain_atoms = st.text(st.sampled_from(ATOM_CHARS), min_size=1, max_size=16).filter(
    lambda s: not s.startswith("~{") and not s.startswith("]"))
sequence_sets = st.lists(
    st.one_of(st.integers(1, 2**32 - 1).map(str), st.just("*"),
              st.tuples(st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1)).map(
                  lambda t: f"{t[0]}:{t[1]}")),
    min_size=1, max_size=8).map(",".join)
header_names = st.lists(st.one_of(
    st.sampled_from(["FROM", "To", "x-a", "Subject"]),
    st.binary(min_size=1, max_size=8).map(
        lambda b: '"' + bytes(c for c in b if c not in b'\r\n\0"\\').decode("latin-1") + '"')
    .filter(lambda s: s != '""')), min_size=1, max_size=3).map(" ".join)
sections = st.builds(
    lambda kind, number, text, partial: Atom(f"{kind}[{number}{text}]{partial}"),
    st.sampled_from(["BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"]),
    st.sampled_from(["", "1.", "2.1.", "0.", "1.2.3."]),
    st.one_of(st.sampled_from(["", "HEADER", "TEXT", "MIME"]),
              header_names.map(lambda f: f"HEADER.FIELDS ({f})"),
              header_names.map(lambda f: f"HEADER.FIELDS.NOT ({f})")),
    st.sampled_from(["", "<0>", "<5.10>", "<4294967296.1>"]),
).map(lambda a: Atom(a.value.replace("[.", "[").replace(".]", "]")))
atoms = st.one_of(plain_atoms.map(Atom), sequence_sets.map(Atom), sections,
                  st.sampled_from(["NIL", "\\Seen", "\\*", "UID", "FLAGS", "ENVELOPE"]).map(Atom))
quoted = st.binary(max_size=40).map(lambda b: Quoted(bytes(c for c in b if c not in b"\0\r\n")))
literals = st.builds(Literal, st.binary(max_size=60), st.booleans(), st.booleans())
tokens: st.SearchStrategy[Token] = st.recursive(
    st.one_of(atoms, quoted, literals),
    lambda children: st.lists(children, max_size=5).map(lambda xs: ParenList(tuple(xs))),
    max_leaves=20,
)
tags = st.text(st.sampled_from("abcA019.-_!#$&'"), min_size=1, max_size=8)
command_names = st.sampled_from(["NOOP", "FETCH", "APPEND", "LOGIN", "SELECT", "STORE",
                                 "SEARCH", "X-ODD", "ID", "AUTHENTICATE", "ENABLE", "LIST"])
commands = st.builds(Command, tags, command_names, st.lists(tokens, max_size=6).map(tuple),
                     st.booleans())

codes = st.sampled_from([None, "ALERT", "UIDNEXT", "CAPABILITY", "PERMANENTFLAGS", "TOOBIG",
                         "X-CUSTOM"])
line_text = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c not in b"\r\n").lstrip(b" "))
status_responses = st.builds(
    StatusResponse, st.one_of(st.none(), tags), st.sampled_from(["OK", "NO", "BAD", "BYE"]),
    codes, st.one_of(st.none(), st.sampled_from([b"12", b"(\\Seen \\*)", b"IMAP4rev1 IDLE"])),
    line_text,
).filter(lambda r: r.code is not None or r.code_data is None).filter(
    lambda r: not (r.code is None and r.text.startswith(b"[")))
data_responses = st.builds(
    DataResponse, st.one_of(st.none(), st.integers(0, 2**32)),
    st.sampled_from(["FETCH", "LIST", "SEARCH", "X-ODD", "FLAGS", "EXISTS", "ESEARCH"]),
    st.lists(tokens, max_size=5).map(tuple))
responses: st.SearchStrategy[Response] = st.one_of(
    status_responses, data_responses, st.builds(Continuation, line_text))

# --- hostile bytes ---------------------------------------------------------------------------

PIECES = [
    b"a1 ", b"* ", b"+ ", b"NOOP", b"FETCH", b"UID ", b"LOGIN", b"SELECT", b"OK", b"BYE",
    b" ", b"  ", b"(", b")", b'"', b"\\", b"\r\n", b"\n", b"\r", b"{3}\r\n", b"{2+}\r\n",
    b"~{1}\r\n", b"{0}\r\n", b"{99999999999999999999}\r\n", b"{18446744073709551616+}\r\n",
    b"[", b"]", b"<0.5>", b"<", b">", b"*", b"+", b"\x00", b"\xff", b"\x80", b"BODY[",
    b"BODY.PEEK[HEADER.FIELDS (", b"BINARY[1.2]", b"1:*", b"1:4294967295", b"NIL", b"%",
    b"[ALERT]", b"[CAPABILITY ", b"9" * 30, b"&AOk-", b"&-", b"&Jjo", b"(" * 70, b")" * 70,
    b"ENVELOPE", b"BODYSTRUCTURE", b"RFC822.SIZE", b"\\Seen", b"MIME", b"TEXT", b"\xb5",
    b"\xdf", b"9" * 5000, b"1:1048576,",
]
imap_soup = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=4)),
                     max_size=60).map(b"".join)
hostile_bytes = st.one_of(st.binary(max_size=600), imap_soup)


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at random places."""
    if not data:
        return []
    cuts = sorted(set(draw(st.lists(st.integers(1, len(data)), max_size=12))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if a < b]


# --- messages for the MIME parser ------------------------------------------------------------

MIME_PIECES = [
    b"From: a@b\r\n", b"To: \"x\" <y@z>, g: a@b, c@d;\r\n", b"Subject: =?utf-8?q?h=C3=A9?=\r\n",
    b"MIME-Version: 1.0\r\n", b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: multipart/digest; boundary=\"b2\"\r\n", b"Content-Type: message/rfc822\r\n",
    b"Content-Type: text/plain; charset*=utf-8''%C3%A9; name*0=a; name*1=b\r\n",
    b"Content-Transfer-Encoding: base64\r\n", b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"Content-Disposition: attachment; filename=\"a b\"\r\n", b"Content-Language: en, fr\r\n",
    b"Message-ID: <x@y>\r\n", b"In-Reply-To: <a@b>\r\n", b"Date: Mon, 1 Jan 2024 00:00:00\r\n",
    b"\r\n", b"\n", b"--b\r\n", b"--b--\r\n", b"--b2\r\n", b"--b2--\r\n", b" folded\r\n",
    b"\tfolded\n", b"aGVsbG8=\r\n", b"=3D=\r\n", b"=ZZ", b"====", b"\x00", b"\xff\xfe",
    b"body text\r\n", b"(comment) \"quoted\\\" \" <route@x> ;:,", b"Content-Type: ",
]
message_bytes = st.one_of(
    st.binary(max_size=800),
    st.lists(st.one_of(st.sampled_from(MIME_PIECES), st.binary(max_size=6)), max_size=50)
    .map(b"".join),
)
section_items = st.one_of(
    sections.map(lambda a: a.value),
    st.sampled_from(["BODY", "BODYSTRUCTURE", "ENVELOPE", "RFC822", "RFC822.SIZE",
                     "RFC822.HEADER", "RFC822.TEXT"]),
    st.tuples(st.sampled_from(["BODY[", "BINARY[", "BINARY.SIZE[", "BODY.PEEK["]),
              st.text(st.sampled_from("0123456789.HEADRFILSTXMNO() \"\\\xb5\xdf\xff"),
                      max_size=30),
              st.sampled_from(["]", "]<1>", "]<0.3>", "", "]<x>"])).map("".join),
)
