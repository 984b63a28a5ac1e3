"""RFC 822 / MIME tokens as Dovecot 2.3 reads them (lib-mail/rfc822-parser.c, rfc2231-parser.c).

Header values (Content-Type, addresses, Content-Language, ...) are tokenised exactly like
Dovecot so that BODYSTRUCTURE and ENVELOPE match it byte for byte, including its leniency with
broken input. Methods mirror the C functions and their return codes: ``1`` = more data
follows, ``0`` = end of data reached, ``-1`` = syntax error. Reading past the end yields a NUL
byte, as the C code's one-past-the-end reads would only ever compare it to punctuation.
"""

from __future__ import annotations

import re

# Dovecot's rfc822_atext_chars: 0 = special/control, 1 = atext, 2 = alnum or 8-bit,
# 4 = atext that is a MIME tspecial ("/", "=", "?").
_ATEXT = bytearray(256)
for _c in b"!#$%&'*+-^_`{|}~":
    _ATEXT[_c] = 1
for _c in b"/=?":
    _ATEXT[_c] = 4
for _c in range(256):
    if chr(_c).isalnum() and _c < 128 or _c >= 128:
        _ATEXT[_c] = 2
ATEXT = bytes(_ATEXT)
IS_ATEXT = bytes(1 if v else 0 for v in ATEXT)
IS_TOKEN = bytes(1 if v & 3 or c == 0x2E else 0 for c, v in enumerate(ATEXT))  # mime token or "."
IS_ATEXT_OR_DOT = bytes(1 if v or c == 0x2E else 0 for c, v in enumerate(ATEXT))

NUL_REPLACEMENT = "\ufffd".encode()


def _run(table: bytes) -> re.Pattern[bytes]:
    """A regex matching a (possibly empty) run of the bytes ``table`` marks."""
    return re.compile(b"[" + b"".join(re.escape(bytes([c])) for c in range(256) if table[c])
                      + b"]*")


_ATEXT_RUN = _run(IS_ATEXT)
_TOKEN_RUN = _run(IS_TOKEN)
_ATEXT_OR_DOT_RUN = _run(IS_ATEXT_OR_DOT)
_LWSP_RUN = re.compile(rb"[ \t\r\n]*")


class Rfc822Parser:
    """A cursor over one header value (``data``), with Dovecot's rfc822_parser_context fields."""

    __slots__ = ("data", "end", "last_comment", "nul_replacement", "pos")

    def __init__(self, data: bytes, last_comment: bytearray | None = None) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.last_comment = last_comment
        self.nul_replacement: bytes | None = None

    def peek(self) -> int:
        """The current byte, or NUL at the end (see the module docstring)."""
        return self.data[self.pos] if self.pos < self.end else 0

    def skip_comment(self) -> int:
        data, end = self.data, self.end
        comment = self.last_comment
        if comment is not None:
            del comment[:]
        level = 1
        self.pos += 1
        start = self.pos
        while self.pos < end:
            c = data[self.pos]
            if c == 0:
                if comment is not None and self.nul_replacement is not None:
                    comment += data[start:self.pos] + self.nul_replacement
                    start = self.pos + 1
            elif c == 0x28:  # (
                level += 1
            elif c == 0x29:  # )
                level -= 1
                if level == 0:
                    if comment is not None:
                        comment += data[start:self.pos]
                    self.pos += 1
                    return 1 if self.pos < end else 0
            elif c == 0x0A:
                if comment is not None:
                    stop = self.pos - 1 if self.pos > start and data[self.pos - 1] == 0x0D \
                        else self.pos
                    comment += data[start:stop]
                    start = self.pos + 1
            elif c == 0x5C:  # backslash
                self.pos += 1
                if self.pos >= end:
                    return -1
                if data[self.pos] in (0x0D, 0x0A, 0):
                    self.pos -= 1
                else:
                    if comment is not None:
                        comment += data[start:self.pos - 1]
                    start = self.pos
            self.pos += 1
        return -1

    def skip_lwsp(self) -> int:
        data, end = self.data, self.end
        while True:
            match = _LWSP_RUN.match(data, self.pos)
            assert match is not None
            self.pos = match.end()
            if self.pos >= end or data[self.pos] != 0x28:
                break
            if self.skip_comment() < 0:
                return -1
        return 1 if self.pos < end else 0

    def parse_atom(self, out: bytearray) -> int:
        if self.pos >= self.end or not IS_ATEXT[self.data[self.pos]]:
            return -1
        return self._run(_ATEXT_RUN, out)

    def _run(self, pattern: re.Pattern[bytes], out: bytearray) -> int:
        """Append the run of ``pattern`` bytes; 0 if it reaches the end, else skip_lwsp()."""
        start = self.pos
        match = pattern.match(self.data, start)
        assert match is not None
        self.pos = match.end()
        out += self.data[start:self.pos]
        return self.skip_lwsp() if self.pos < self.end else 0

    def parse_dot_atom(self, out: bytearray) -> int:
        data, end = self.data, self.end
        if self.pos >= end or not IS_ATEXT[data[self.pos]]:
            return -1
        start = self.pos
        while True:
            match = _ATEXT_RUN.match(data, self.pos)
            assert match is not None
            self.pos = match.end()
            if self.pos >= end:
                break
            if start == self.pos:
                return -1
            out += data[start:self.pos]
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret
            if data[self.pos] != 0x2E:
                return 1
            self.pos += 1
            out.append(0x2E)
            if self.skip_lwsp() <= 0:
                return -1
            start = self.pos
        out += data[start:self.pos]
        return 0

    def parse_mime_token(self, out: bytearray) -> int:
        return self._run(_TOKEN_RUN, out)

    def parse_quoted_string(self, out: bytearray) -> int:
        data, end = self.data, self.end
        self.pos += 1
        start = self.pos
        while self.pos < end:
            c = data[self.pos]
            if c == 0x22:
                out += data[start:self.pos]
                self.pos += 1
                return self.skip_lwsp()
            if c == 0x5C:
                self.pos += 1
                if self.pos >= end:
                    return -1
                if data[self.pos] in (0x0D, 0x0A, 0):
                    self.pos -= 1
                else:
                    out += data[start:self.pos - 1]
                    start = self.pos
            elif c == 0x0A:
                stop = self.pos - 1 if self.pos > start and data[self.pos - 1] == 0x0D \
                    else self.pos
                out += data[start:stop]
                start = self.pos + 1
            elif c == 0 and self.nul_replacement is not None:
                out += data[start:self.pos] + self.nul_replacement
                start = self.pos + 1
            self.pos += 1
        return -1

    def _parse_atom_or_dot(self, out: bytearray) -> int:
        return self._run(_ATEXT_OR_DOT_RUN, out)

    def parse_phrase(self, out: bytearray) -> int:
        if self.pos >= self.end:
            return 0
        if self.data[self.pos] == 0x2E:
            return -1
        while True:
            if self.data[self.pos] == 0x22:
                ret = self.parse_quoted_string(out)
            else:
                ret = self._parse_atom_or_dot(out)
            if ret <= 0:
                return ret
            c = self.data[self.pos]
            if not IS_ATEXT[c] and c != 0x22 and c != 0x2E:
                break
            out.append(0x20)
        return self.skip_lwsp()

    def _parse_domain_literal(self, out: bytearray) -> int:
        data, end = self.data, self.end
        start = self.pos
        self.pos += 1
        while self.pos < end:
            c = data[self.pos]
            if c == 0x5B:  # [
                return -1
            if c == 0x5D:  # ]
                out += data[start:self.pos + 1]
                self.pos += 1
                return self.skip_lwsp()
            if c == 0x0A:
                stop = self.pos - 1 if self.pos > start and data[self.pos - 1] == 0x0D \
                    else self.pos
                out += data[start:stop]
                start = self.pos + 1
            elif c == 0x5C:
                self.pos += 1
                if self.pos >= end:
                    return -1
                if data[self.pos] in (0x0D, 0x0A, 0):
                    out += data[start:self.pos]
                    start = self.pos
                    self.pos -= 1
            elif c == 0 and self.nul_replacement is not None:
                out += data[start:self.pos] + self.nul_replacement
                start = self.pos + 1
            self.pos += 1
        return -1

    def parse_domain(self, out: bytearray) -> int:
        self.pos += 1  # "@"
        if self.skip_lwsp() <= 0:
            return -1
        if self.data[self.pos] == 0x5B:
            return self._parse_domain_literal(out)
        return self.parse_dot_atom(out)

    def parse_content_type(self, out: bytearray) -> int:
        """``type/subtype`` into ``out``; on errors after the main type ``out`` is emptied, but
        a main type that runs to the end of the value is kept (Dovecot's exact behaviour)."""
        start_len = len(out)
        if self.skip_lwsp() <= 0:
            return -1
        if self.parse_mime_token(out) <= 0 or len(out) == start_len:
            return -1
        if self.data[self.pos] != 0x2F:  # /
            del out[start_len:]
            return -1
        self.pos += 1
        if self.skip_lwsp() <= 0:
            del out[start_len:]
            return -1
        out.append(0x2F)
        sub_start = len(out)
        ret = self.parse_mime_token(out)
        if ret < 0 or len(out) == sub_start or (self.pos != self.end
                                                 and self.data[self.pos] != 0x3B):
            del out[start_len:]
            return -1
        return ret

    def parse_content_param(self, value: bytearray) -> tuple[int, bytes | None]:
        """One ``; key=value``: (ret, key). ``value`` receives the value."""
        del value[:]
        if self.pos >= self.end:
            return 0, None
        if self.data[self.pos] != 0x3B:
            return -1, None
        self.pos += 1
        if self.skip_lwsp() <= 0:
            return -1, None
        key = bytearray()
        if self.parse_mime_token(key) <= 0:
            return -1, None
        if self.data[self.pos] != 0x3D:  # =
            return -1, None
        self.pos += 1
        ret = self.skip_lwsp()
        if ret <= 0:
            pass  # broken / no value
        elif self.data[self.pos] == 0x22:
            ret = self.parse_quoted_string(value)
        elif self.data[self.pos] == 0x3D:
            # Dovecot's workaround for broken name==?utf-8?b?...?= values.
            data, end = self.data, self.end
            start = self.pos
            while self.pos < end and data[self.pos] not in b"; \t\r\n":
                self.pos += 1
            value += data[start:self.pos]
        else:
            ret = self.parse_mime_token(value)
        return (-1 if ret < 0 else 1), bytes(key)


def rfc2231_parse(parser: Rfc822Parser) -> list[tuple[bytes, bytes]]:
    """The ``; key=value`` parameters after the current position, RFC 2231 continuations
    merged as Dovecot does: plain parameters first, in order, then the merged ``key*<n>``
    groups sorted by key; values stay undecoded (``name*`` keeps ``utf-8''...``)."""
    saved_nul = parser.nul_replacement
    parser.nul_replacement = NUL_REPLACEMENT
    result: list[tuple[bytes, bytes]] = []
    continued: list[tuple[bytes, int, bool, bytes]] = []  # key, index, extended, value
    value = bytearray()
    idx = 0  # carried over between parameters, as in Dovecot (a bare "key*" reuses it)
    while True:
        ret, key = parser.parse_content_param(value)
        if ret == 0:
            break
        if ret < 0 or key is None:
            if parser.pos >= parser.end:
                break
            parser.pos += 1
            continue
        star = key.find(b"*")
        plain = star < 0
        if not plain:
            p = star
            if p + 1 < len(key):
                p += 1
                idx = 0
                while p < len(key) and 0x30 <= key[p] <= 0x39:
                    idx = (idx * 10 + key[p] - 0x30) & 0xFFFFFFFF
                    p += 1
            extended = p < len(key) and key[p] == 0x2A
            if extended:
                p += 1
            if p != len(key):
                plain = True
            else:
                continued.append((key[:star], idx, extended, bytes(value)))
        if plain:
            result.append((key, bytes(value)))
    parser.nul_replacement = saved_nul
    if not continued:
        return result
    continued.sort(key=lambda item: (item[0], item[1]))
    i = 0
    while i < len(continued):
        group_key = continued[i][0].lower()
        j = i
        ok, have_extended, next_idx = True, False, 0
        while j < len(continued) and continued[j][0].lower() == group_key:
            if continued[j][1] != next_idx:
                ok = False
            if continued[j][2]:
                have_extended = True
            next_idx += 1
            j += 1
        if not ok:
            for key, index, extended, val in continued[i:j]:
                suffix = b"*%d*" % index if extended else b"*%d" % index
                result.append((key + suffix, val))
        else:
            merged = bytearray()
            if not continued[i][2] and have_extended:
                merged += b"''"
            for _key, _index, extended, val in continued[i:j]:
                if not extended and have_extended:
                    merged += val.replace(b"%", b"%25")
                else:
                    merged += val
            name = continued[i][0] + (b"*" if have_extended else b"")
            result.append((name, bytes(merged)))
        i = j
    return result
