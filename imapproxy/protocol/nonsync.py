"""When a relayed command may carry non-synchronising literals (``{n+}``) to the upstream.

An IMAP server reads a literal only while parsing the argument it belongs to. Dovecot stops at
the first argument it refuses (8-bit data in an atom, ``~{n}`` outside APPEND, a bad flag or
date in APPEND), and many commands read only the arguments they take (NOOP none, CREATE one,
COPY two, ...); then it skips to the next line feed and reads what follows as new commands.
With ``{n+}`` that is the literal's data: a client could run commands upstream that the proxy
never saw (past the capability allowlist, or selecting another mailbox behind its back, so
bodies would be cached under the wrong mailbox).

A synchronising literal is sent only after the server's ``+``: a server that stopped reading
answers the command instead, and the data is never sent. So literals go synchronising, except
in the two shapes every server reads whole and the proxy sends most: LOGIN with two strings,
and APPEND of one message with valid flags and date (one round trip saved per message).
"""

from __future__ import annotations

import re
from datetime import datetime

from .command import Command
from .errors import ProtocolError
from .tokens import Atom, Literal, ParenList, Quoted, Token

SYSTEM_FLAGS = frozenset({"\\SEEN", "\\ANSWERED", "\\FLAGGED", "\\DELETED", "\\DRAFT"})
_PLAIN_ATOM = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+\Z")  # no specials, no 8-bit
_KEYWORD = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|}~]+\Z")
_DATE = re.compile(r"[ 0-9]?[0-9]-[A-Za-z]{3}-[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}\Z")


def may_send_nonsync(command: Command) -> bool:
    """True when every literal of ``command`` is sure to be read by the server."""
    if not _has_literal(command.args):
        return True
    if command.uid:
        return False
    args = command.args
    if command.name == "LOGIN":
        return len(args) == 2 and all(_is_string(a) for a in args)
    if command.name != "APPEND" or len(args) < 2 or not _is_string(args[0]):
        return False
    *middle, message = args[1:]
    if not isinstance(message, Literal):
        return False
    if middle and isinstance(middle[0], ParenList):
        if not all(_is_flag(f) for f in middle[0].items):
            return False
        middle = middle[1:]
    if middle and isinstance(middle[0], Quoted) and _is_date(middle[0].value):
        middle = middle[1:]
    return not middle


def check_append(command: Command) -> None:
    """ProtocolError for an APPEND not shaped ``mailbox [(flags)] [date] literal ...``: given
    an atom where flags or a date go, Dovecot reads the message literal without asking for
    it with ``+``, so a proxy sending it synchronising would wait forever."""
    args = command.args
    if len(args) < 2 or not isinstance(args[-1], Literal) \
            or any(isinstance(a, Atom) for a in args[1:]):
        raise ProtocolError("APPEND: Invalid arguments", command.tag)


def _has_literal(tokens: tuple[Token, ...]) -> bool:
    return any(isinstance(t, Literal) or (isinstance(t, ParenList) and _has_literal(t.items))
               for t in tokens)


def _is_string(token: Token) -> bool:
    """An astring the server reads whole: a plain atom, a quoted string or a plain literal."""
    if isinstance(token, Atom):
        return bool(_PLAIN_ATOM.match(token.value))
    return isinstance(token, Quoted) or (isinstance(token, Literal) and not token.binary)


def _is_flag(token: Token) -> bool:
    if not isinstance(token, Atom):
        return False
    if token.value.startswith("\\"):
        return token.value.upper() in SYSTEM_FLAGS
    return bool(_KEYWORD.match(token.value))


def _is_date(value: bytes) -> bool:
    """A date-time no server refuses (strictly RFC 3501's form, a real date, 1970 to 2037)."""
    text = value.decode("latin-1")
    if not _DATE.match(text) or int(text[-2:]) > 59:
        return False
    try:
        when = datetime.strptime(text.strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return False
    return 1970 <= when.year <= 2037
