"""The plaintext filter: HTML-only mail, alternatives, attachments, attached messages, broken
and non-UTF-8 charsets, and every message of the test corpora."""

from __future__ import annotations

import base64
import quopri
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from filters._html_text import html_to_text
from filters.plaintext import PlaintextFilter, make_filter
from imapproxy.filtering.api import FilterContext, MessageFilter
from imapproxy.mime import bodystructure, parse_message
from imapproxy.mime.decode import qp_decode
from tests.filters.images import odd_shapes
from tests.mailgen import corpus_messages, generated

CTX = FilterContext(user="alice")


def flatten(raw: bytes) -> bytes:
    out = make_filter({}).apply(raw, CTX)
    assert out is not None
    return out


def text_of(out: bytes) -> str:
    """The body of a filtered message, checked to be one valid UTF-8 text/plain part."""
    root = parse_message(out)
    assert not root.children
    structure = bodystructure(root)
    assert structure.startswith(b'("text" "plain" ("charset" "utf-8") NIL NIL ')
    assert out.count(b"\n") == out.count(b"\r\n")
    body = out[root.body_offset:]
    assert root.content.transfer_encoding is not None
    cte = root.content.transfer_encoding.lower()
    if cte == b"quoted-printable":
        body = qp_decode(body)
    else:
        assert cte == b"7bit" and body.isascii()
    assert all(len(line) <= 998 for line in out.split(b"\r\n"))
    return body.decode("utf-8").replace("\r\n", "\n")


def header_block(raw: bytes) -> bytes:
    return raw[:raw.index(b"\r\n\r\n") + 2]


def simple(subject: str = "Hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.org>"
    msg["To"] = "bob@example.org"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Jan 2023 03:04:05 +0200"
    return msg


def test_the_filter_follows_the_contract() -> None:
    f = make_filter({})
    assert isinstance(f, MessageFilter)
    assert (f.name, f.version, f.cache_output) == ("plaintext", "1", True)
    assert f.fingerprint() == PlaintextFilter().fingerprint()
    with pytest.raises(ValueError, match="plaintext"):
        make_filter({"width": 72})


def test_plain_single_part_messages_are_left_alone() -> None:
    msg = simple()
    msg.set_content("Grüße\n", charset="iso-8859-1", cte="quoted-printable")
    assert make_filter({}).apply(msg.as_bytes(policy=SMTP), CTX) is None
    bare = b"From: a@example.org\r\nSubject: no MIME at all\r\n\r\nhello\r\n"
    assert make_filter({}).apply(bare, CTX) is None


def test_html_only_becomes_readable_text() -> None:
    msg = simple()
    msg["X-Keep"] = "kept as is"
    msg.set_content(
        "<html><head><style>p{color:red}</style><script>alert('x')</script></head><body>"
        "<h1>Title</h1><p>Read <a href='https://example.org/doc'>the doc</a>, "
        "caf&eacute;.</p><ul><li>one</li><li>two</li></ul>"
        "<ol><li>first</li><li>second</li></ol></body></html>", subtype="html")
    raw = msg.as_bytes(policy=SMTP)
    out = flatten(raw)
    text = text_of(out)
    assert text == ("Title\n\nRead the doc <https://example.org/doc>, café.\n\n"
                    "- one\n- two\n\n1. first\n2. second\n")
    # top-level header kept byte for byte, except Content-*; MIME-Version kept
    kept = [line for line in header_block(raw).split(b"\r\n")
            if not line.lower().startswith(b"content-")]
    assert header_block(out).split(b"\r\n")[:len(kept) - 1] == kept[:-1]
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in header_block(out)
    assert header_block(out).count(b"MIME-Version") == 1


def test_alternative_prefers_the_plain_part() -> None:
    msg = simple()
    msg.set_content("The plain version.\n")
    msg.add_alternative("<p>The <b>HTML</b> version.</p>", subtype="html")
    text = text_of(flatten(msg.as_bytes(policy=SMTP)))
    assert text == "The plain version.\n"
    assert text_of(flatten(msg.as_bytes(policy=SMTP))).isascii()


def test_alternative_with_related_html_uses_the_html() -> None:
    msg = simple()
    msg.add_alternative("<p>Only <i>HTML</i> here</p><img src='cid:x' alt='chart'>",
                        subtype="html")
    html = next(iter(msg.iter_parts()))
    html.add_related(b"\x89PNG fake", "image", "png", cid="<x>", filename="chart.png")
    text = text_of(flatten(msg.as_bytes(policy=SMTP)))
    assert text == "Only HTML here\n\n[chart]\n\n[attachment: chart.png, image/png, 9 bytes]\n"


def test_attachments_become_lines_with_name_type_and_size() -> None:
    msg = simple()
    msg.set_content("See attached.\n")
    msg.add_attachment(b"%PDF" * 300_000, "application", "pdf", filename="report.pdf")
    msg.add_attachment("a,b\n1,2\n", subtype="csv", filename="data.csv")
    msg.add_attachment(b"\x00" * 2048, "application", "octet-stream",
                       filename="Résumé final.bin")
    out = flatten(msg.as_bytes(policy=SMTP))
    assert text_of(out) == (
        "See attached.\n\n"
        "[attachment: report.pdf, application/pdf, 1.1 MB]\n\n"
        "[attachment: data.csv, text/csv, 10 bytes]\n\n"
        "[attachment: Résumé final.bin, application/octet-stream, 2 KB]\n")
    assert len(out) < 1000


def test_text_attachment_and_unnamed_part() -> None:
    msg = simple()
    msg.set_content("Body.\n")
    msg.add_attachment("notes\n", filename="notes.txt")
    msg.add_attachment(b"\x01\x02", "application", "x-thing")
    text = text_of(flatten(msg.as_bytes(policy=SMTP)))
    assert "[attachment: notes.txt, text/plain, 7 bytes]" in text
    assert "[attachment: application/x-thing, 2 bytes]" in text


def test_nested_messages_show_a_summary_and_their_text_recursively() -> None:
    innermost = simple("=?utf-8?q?Gr=C3=BC=C3=9Fe?=")
    innermost.set_content("<p>deep html</p>", subtype="html")
    inner = simple("Inner")
    inner.set_content("inner text\n")
    inner.add_attachment(innermost)
    outer = simple("Outer")
    outer.set_content("outer text\n")
    outer.add_attachment(inner)
    text = text_of(flatten(outer.as_bytes(policy=SMTP)))
    assert text == (
        "outer text\n\n-------- Attached message --------\n"
        "From: Alice <alice@example.org>\nSubject: Inner\n"
        "Date: Mon, 02 Jan 2023 03:04:05 +0200\n\ninner text\n\n"
        "-------- Attached message --------\nFrom: Alice <alice@example.org>\n"
        "Subject: Grüße\nDate: Mon, 02 Jan 2023 03:04:05 +0200\n\ndeep html\n")


@pytest.mark.parametrize(("charset", "cte"), [
    ("iso-8859-1", b"8bit"), ("windows-1252", b"quoted-printable"), ("koi8-r", b"base64"),
    ("shift_jis", b"base64"),
])
def test_non_utf8_charsets(charset: str, cte: bytes) -> None:
    words = {"iso-8859-1": "Grüße naïve", "windows-1252": "“quotes” €5",
             "koi8-r": "Привет мир", "shift_jis": "日本語のテキスト"}[charset]
    body = words.encode(charset)
    if cte == b"quoted-printable":
        body = quopri.encodestring(body)
    elif cte == b"base64":
        body = base64.encodebytes(body)
    raw = (b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
           b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\n"
           b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + body.replace(b"\n", b"\r\n")
           + b"\r\n--B--\r\n")
    assert text_of(flatten(raw)) == words + "\n"


def test_broken_charsets_and_encodings_are_tolerated() -> None:
    raw = (b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
           b"Content-Type: text/plain; charset=us-ascii\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n--B\r\n"
           b"Content-Type: text/plain; charset=no-such-charset\r\n\r\ncaf\xe9\r\n--B\r\n"
           b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n"
           b"\r\nPGI+aGk8L2I+!!!\r\n--B\r\n"
           b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nodd\r\n"
           b"--B--\r\n")
    assert text_of(flatten(raw)) == "Grüße\n\ncafé\n\nhi\n\nodd\n"


def test_long_lines_are_quoted_printable() -> None:
    msg = simple()
    msg.add_alternative("<p>" + "word " * 400 + "</p>", subtype="html")
    out = flatten(msg.as_bytes(policy=SMTP))
    assert b"Content-Transfer-Encoding: quoted-printable" in out
    assert text_of(out).split() == ["word"] * 400


def test_html_conversion_details() -> None:
    text = html_to_text(
        "<p>a<br>b</p><blockquote><p>q1</p><p>q2</p></blockquote>"
        "<table><tr><td>x</td><td>y</td></tr></table><pre>  keep\n    spaces</pre>"
        "<a href='mailto:bob@example.org'>bob@example.org</a> <a href='#top'>top</a>"
        "<noscript>no</noscript>")
    assert text == "a\nb\n\n> q1\n>\n> q2\n\nx | y\n\n  keep\n    spaces\n\nbob@example.org top"
    assert html_to_text("<p>unclosed <div><b>tags") == "unclosed\ntags"


def test_every_test_message_gives_a_valid_message_or_none() -> None:
    f = make_filter({})
    changed = 0
    for raw in generated(200) + corpus_messages() + odd_shapes():
        out = f.apply(raw, CTX)
        if out is not None:
            changed += 1
            text_of(out)
    assert changed > 100  # most generated shapes are multipart


def test_multipart_without_boundary_shows_its_body() -> None:
    raw = (b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n"
           b"\r\nthe body\r\n")
    assert text_of(flatten(raw)) == "the body\n"
