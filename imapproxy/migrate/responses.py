"""Reading servers' answers, tolerantly: an entry that does not have the expected shape
(Exchange and others send some) is skipped, never fatal."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..protocol.response import (
    DataResponse,
    Response,
    StatusResponse,
    fetch_attributes,
    number_value,
)
from ..protocol.tokens import Atom, Literal, ParenList, Quoted, string_value
from .errors import MigrateError
from .model import MailboxInfo, MailboxStatus, MessageMeta, normalize_flags

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    untagged: list[Response]
    status: StatusResponse

    @property
    def ok(self) -> bool:
        return self.status.status == "OK"

    def data(self, name: str) -> list[DataResponse]:
        return [r for r in self.untagged if isinstance(r, DataResponse) and r.name == name]

    def describe(self) -> str:
        code = f"[{self.status.code}] " if self.status.code else ""
        return f"{self.status.status} {code}{self.status.text.decode('utf-8', 'replace')}"


def is_throttled(code: str | None, text: bytes) -> bool:
    return code == "THROTTLED" or b"[THROTTLED]" in text.upper()


def parse_list_entry(response: DataResponse) -> MailboxInfo | None:
    """``* LIST (\\attrs) "/" name``; None when it does not have that shape."""
    args = response.args
    if len(args) < 3 or not isinstance(args[0], ParenList):
        log.warning("skipping an unreadable %s entry", response.name)
        return None
    attributes = frozenset(a.upper() for a in args[0].items if isinstance(a, Atom))
    delimiter: str | None = None
    if isinstance(args[1], (Quoted, Literal)):
        delimiter = args[1].value.decode("utf-8", "replace") or None
    if isinstance(args[2], ParenList):  # a list where a name should be
        return None
    name = string_value(args[2]).decode("utf-8", "replace")
    return MailboxInfo(name, delimiter, attributes)


def status_from(answer: Answer) -> MailboxStatus:
    values: dict[str, int] = {}
    exists = 0
    for response in answer.untagged:
        if isinstance(response, StatusResponse) and response.code in (
                "UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ") and response.code_data:
            text = response.code_data.decode("ascii", "replace").strip()
            if text.isdigit():
                values[response.code] = int(text)
        elif isinstance(response, StatusResponse) and response.code == "NOMODSEQ":
            values.pop("HIGHESTMODSEQ", None)
        elif isinstance(response, DataResponse) and response.name == "EXISTS" \
                and response.number is not None:
            exists = response.number
    if "UIDVALIDITY" not in values:
        raise MigrateError("the server gave no UIDVALIDITY")
    return MailboxStatus(values["UIDVALIDITY"], values.get("UIDNEXT", 0),
                         values.get("HIGHESTMODSEQ"), exists)


def meta_from(response: Response) -> MessageMeta | None:
    attrs = fetch_attributes(response)
    if attrs is None:
        return None
    uid = number_value(attrs.get("UID"))
    if uid is None:
        return None  # an unsolicited flag update without UID
    flags_token = attrs.get("FLAGS")
    flags = [t.value for t in flags_token.items if isinstance(t, Atom)] \
        if isinstance(flags_token, ParenList) else []
    date = attrs.get("INTERNALDATE")
    internaldate = date.value.decode("ascii", "replace") if isinstance(date, Quoted) else None
    modseq_token = attrs.get("MODSEQ")
    modseq = number_value(modseq_token.items[0]) \
        if isinstance(modseq_token, ParenList) and modseq_token.items else None
    return MessageMeta(uid, normalize_flags(flags), internaldate,
                       number_value(attrs.get("RFC822.SIZE")) or 0, modseq,
                       number_value(attrs.get("X-GM-MSGID")))


def expand_set(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        if low.isdigit() and (not high or high.isdigit()):
            a, b = int(low), int(high or low)
            out.extend(range(min(a, b), max(a, b) + 1))
    return out
