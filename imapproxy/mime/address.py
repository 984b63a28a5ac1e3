"""Address headers as Dovecot 2.3 parses them for ENVELOPE (lib-mail/message-address.c, with
FILL_MISSING and non-strict dots).

Dovecot never rejects an address list: broken pieces become MISSING_MAILBOX /
MISSING_DOMAIN / SYNTAX_ERROR / INVALID_ROUTE placeholders, a lone word is taken as a display
name, a comment after an addr-spec becomes the name, and groups are framed by a
``(NIL NIL "name" NIL)`` / ``(NIL NIL NIL NIL)`` pair. This port keeps its control flow so the
same input gives the same list.
"""

from __future__ import annotations

from .part import Address
from .rfc822 import NUL_REPLACEMENT, Rfc822Parser

__all__ = ["parse_addresses"]

MISSING_MAILBOX = b"MISSING_MAILBOX"
MISSING_DOMAIN = b"MISSING_DOMAIN"


def parse_addresses(value: bytes) -> tuple[Address, ...]:
    """The addresses of one header value (empty when there are none)."""
    return _AddressParser(value).run()


class _AddressParser:
    def __init__(self, value: bytes) -> None:
        self.p = Rfc822Parser(value, last_comment=bytearray())
        self.p.nul_replacement = NUL_REPLACEMENT
        self.out: list[Address] = []
        self.str = bytearray()
        self._reset()

    def _reset(self) -> None:
        self.name: bytes | None = None
        self.route: bytes | None = None
        self.mailbox: bytes | None = None
        self.domain: bytes | None = None
        self.invalid = False

    def _cur(self) -> int:
        return self.p.peek()

    def _at_end(self) -> bool:
        return self.p.pos >= self.p.end

    def add(self) -> None:
        self.out.append((self.name, self.route, self.mailbox, self.domain))
        self._reset()

    def add_fixed(self) -> None:
        if self.mailbox is None:
            self.mailbox = MISSING_MAILBOX
            self.invalid = True
        if not self.domain:
            self.domain = MISSING_DOMAIN
            self.invalid = True
        self.add()

    def run(self) -> tuple[Address, ...]:
        if self.p.skip_lwsp() > 0:
            self.address_list()
        return tuple(self.out)

    # --- the grammar, in message-address.c's order ------------------------------------------

    def nonstrict_dot_atom(self) -> int:
        p = self.p
        ret = -1
        while True:
            while p.peek() == 0x2E:
                self.str.append(0x2E)
                p.pos += 1
                if p.pos == p.end:
                    return 0
                ret = 1
            if p.peek() == 0x40:
                break
            ret = p.parse_atom(self.str)
            if not (ret > 0 and p.peek() == 0x2E):
                break
        return ret

    def local_part(self) -> int:
        del self.str[:]
        if self._cur() == 0x22:
            ret = self.p.parse_quoted_string(self.str)
        else:
            ret = self.nonstrict_dot_atom()
        if ret < 0:
            return -1
        self.mailbox = bytes(self.str)
        return ret

    def domain_part(self) -> int:
        del self.str[:]
        ret = self.p.parse_domain(self.str)
        if ret < 0:
            return -1
        self.domain = bytes(self.str)
        return ret

    def domain_list(self) -> int:
        p = self.p
        del self.str[:]
        while True:
            if p.pos >= p.end:
                return 0
            if p.peek() != 0x40:
                break
            if self.str:
                self.str.append(0x2C)
            self.str.append(0x40)
            ret = p.parse_domain(self.str)
            if ret <= 0:
                return ret
            while p.skip_lwsp() > 0 and p.peek() == 0x2C:
                p.pos += 1
        self.route = bytes(self.str)
        return 1

    def angle_addr(self) -> int:
        p = self.p
        p.pos += 1  # <
        if p.skip_lwsp() <= 0:
            return -1
        if p.peek() == 0x40:
            if self.domain_list() > 0 and p.peek() == 0x3A:
                p.pos += 1
            else:
                self.route = b"INVALID_ROUTE"
                if p.pos >= p.end:
                    return -1
            if p.skip_lwsp() <= 0:
                return -1
        if p.peek() != 0x3E:
            if self.local_part() <= 0:
                return -1
            if p.peek() == 0x40 and self.domain_part() <= 0:
                return -1
        if p.peek() != 0x3E:
            return -1
        p.pos += 1
        return p.skip_lwsp()

    def name_addr(self) -> int:
        p = self.p
        del self.str[:]
        if p.parse_phrase(self.str) <= 0 or p.peek() != 0x3C:
            return -1
        self.name = bytes(self.str) or None
        if self.angle_addr() < 0:
            self.domain = b"SYNTAX_ERROR"
            self.invalid = True
        return 1 if p.pos < p.end else 0

    def addr_spec(self) -> int:
        p = self.p
        ret2 = -2
        comment = p.last_comment
        assert comment is not None
        del comment[:]
        quoted = self._cur() == 0x22
        ret = self.local_part()
        if ret <= 0:
            self.invalid = True
        if ret != 0 and p.pos < p.end and p.peek() == 0x40:
            ret2 = self.domain_part()
            if ret2 <= 0:
                ret = ret2
        if comment:
            self.name = bytes(comment)
        elif ret2 == -2:
            # A word without @domain: a mailbox if alone, else the start of a display name.
            self.str.append(0x20)
            orig = len(self.str)
            p.parse_phrase(self.str)
            if len(self.str) != orig:
                self.mailbox = None
                self.name = bytes(self.str)
            elif not quoted:
                self.domain = b""
            self.invalid = True
            ret = -1
        return ret

    def mailbox_(self) -> int:
        p = self.p
        start = p.pos
        ret = self.name_addr()
        if ret < 0:
            p.pos = start
            ret = self.addr_spec()
            if self.invalid and self.name is None and self.mailbox is not None \
                    and self.domain is None:
                self.name, self.mailbox = self.mailbox, None
        if ret < 0:
            self.invalid = True
        self.add_fixed()
        return ret

    def group(self) -> int:
        p = self.p
        del self.str[:]
        if p.parse_phrase(self.str) <= 0 or p.peek() != 0x3A:
            return -1
        p.pos += 1
        ret = p.skip_lwsp()
        if ret <= 0:
            self.invalid = True
        self.mailbox = bytes(self.str)
        self.add()
        if ret > 0 and p.peek() != 0x3B:
            while True:
                self.mailbox_()
                if p.pos >= p.end or p.peek() != 0x2C:
                    break
                p.pos += 1
                if p.skip_lwsp() <= 0:
                    ret = -1
                    break
        if ret >= 0:
            if p.pos >= p.end or p.peek() != 0x3B:
                ret = -1
            else:
                p.pos += 1
                ret = p.skip_lwsp()
        if ret < 0:
            self.invalid = True
        self.add()
        return 0 if ret == 0 else 1

    def address(self) -> int:
        start = self.p.pos
        ret = self.group()
        if ret < 0:
            self.p.pos = start
            ret = self.mailbox_()
        return ret

    def address_list(self) -> None:
        p = self.p
        while True:
            if self.address() == 0:
                break
            if p.pos >= p.end or p.peek() != 0x2C:
                break
            p.pos += 1
            ret = p.skip_lwsp()
            if ret <= 0:
                if ret < 0:
                    self.add_fixed()  # ends with some garbage
                break

