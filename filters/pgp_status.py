"""gpg's machine-readable status lines (``[GNUPG:] KEYWORD value``, doc/DETAILS in GnuPG)
turned into plain results: which signatures checked out, and gpg's own words for a failure.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

_TRUST = {
    "TRUST_UNDEFINED": "undefined",
    "TRUST_NEVER": "never",
    "TRUST_MARGINAL": "marginal",
    "TRUST_FULLY": "full",
    "TRUST_ULTIMATE": "ultimate",
}


@dataclass(frozen=True)
class Signature:
    """One signature gpg checked."""

    # good | good by expired key | good by revoked key | expired | bad | unknown key | error
    # | invalid (no signature could be read)
    status: str
    key: str  # "0x" + the signer's primary fingerprint (or the key id when that is all we know)
    user: str = ""  # the signer's user id as gpg reports it
    trust: str = ""  # ultimate | full | marginal | undefined | never ("" when not checked)

    def describe(self) -> str:
        """The phrase of the result header, e.g. ``signature good by 0xABC... Alice <a@b>``."""
        if not self.key:
            return f"signature {self.status}"
        if self.status == "unknown key":
            return f"signature unknown key {self.key}"
        words = f"signature {self.status} by {self.key}"
        if self.user:
            words += f" {self.user}"
        if self.status == "good" and self.trust not in ("", "full", "ultimate"):
            words += f" (trust {self.trust})"
        return words


@dataclass(frozen=True)
class Decryption:
    """What gpg made of one encrypted blob; ``data`` is the plaintext, kept in memory only."""

    ok: bool
    data: bytes = b""
    key: str = ""  # "0x" + primary fingerprint of the key that decrypted it
    recipients: tuple[str, ...] = ()  # "0x" + key ids it was encrypted to
    reason: str = ""  # why it failed, in gpg's words
    signatures: tuple[Signature, ...] = ()


@dataclass
class Status:
    """gpg's ``[GNUPG:]`` status lines and its human messages, from one run."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, stderr: str) -> Status:
        """From python-gnupg's ``stderr`` (status lines and messages, read as latin-1)."""
        status = cls()
        for line in stderr.splitlines():
            if line.startswith("[GNUPG:] "):
                keyword, _, value = line[9:].partition(" ")
                status.lines.append((keyword, value))
            elif line.startswith("gpg: "):
                status.messages.append(_text(line[5:]))
        return status

    def values(self, keyword: str) -> list[str]:
        return [value for key, value in self.lines if key == keyword]

    def has(self, keyword: str) -> bool:
        return any(key == keyword for key, _ in self.lines)

    def reason(self) -> str:
        """gpg's own explanation, deduplicated (corrupt armor repeats lines)."""
        seen: list[str] = []
        for message in self.messages:
            if message not in seen and not message.startswith(("encrypted with", " ")):
                seen.append(message)
        return "; ".join(seen[:5]) or "gpg failed"

    def signatures(self) -> tuple[Signature, ...]:
        """Each signature of the run, split at NEWSIG (gpg starts every signature with it)."""
        groups: list[list[tuple[str, str]]] = []
        for key, value in self.lines:
            if key == "NEWSIG" or not groups:
                groups.append([])
            groups[-1].append((key, value))
        found = (_signature(group) for group in groups)
        return tuple(sig for sig in found if sig is not None)


def _signature(lines: list[tuple[str, str]]) -> Signature | None:
    """One signature's status lines as a Signature (None: no signature in them)."""
    by_key = dict(lines)
    trust = next((_TRUST[key] for key, _ in lines if key in _TRUST), "")
    primary = ""
    if "VALIDSIG" in by_key:
        parts = by_key["VALIDSIG"].split()
        primary = "0x" + (parts[9] if len(parts) >= 10 else parts[0])
    for keyword, status in (
        ("GOODSIG", "good"),
        ("EXPKEYSIG", "good by expired key"),
        ("REVKEYSIG", "good by revoked key"),
        ("EXPSIG", "expired"),
        ("BADSIG", "bad"),
    ):
        if keyword in by_key:
            key_id, _, user = by_key[keyword].partition(" ")
            return Signature(status, primary or "0x" + key_id, _text(user), trust)
    if "ERRSIG" in by_key:
        parts = by_key["ERRSIG"].split()
        key = "0x" + (parts[6] if len(parts) >= 7 and parts[6] != "-" else parts[0])
        if "NO_PUBKEY" in by_key:
            return Signature("unknown key", key)
        return Signature("error", key)
    return None


def _text(value: str) -> str:
    """A status or message value as readable text: gpg writes UTF-8 with %XX escapes (read
    as latin-1 by python-gnupg); control characters are dropped so it fits in a header."""
    decoded = value.encode("latin-1", "replace").decode("utf-8", "replace")
    decoded = urllib.parse.unquote(decoded)
    return "".join(ch for ch in decoded if ch.isprintable()).strip()
