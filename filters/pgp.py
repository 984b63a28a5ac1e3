"""The "pgp" message filter: the gateway holds the users' private keys, so clients without PGP
support read decrypted PGP/MIME and inline PGP mail, with a header stating what was decrypted
and whose signature checked out; an APPEND into configured folders can be encrypted to the
user's key so the upstream never stores that plaintext. See docs/pgp.md.

Settings (``[filters.pgp]``): ``gnupg_home`` (required; ``%u`` = user name, else one shared
home), ``gpg_binary`` ("gpg"), ``passphrase_file`` (optional, ``%u`` allowed), ``timeout``
(seconds per gpg run, 30), ``encrypt_append_folders`` ([]: mailbox names or glob patterns),
``encrypt_append_key`` ("%u": the recipient gpg looks up, ``%u`` = user name),
``max_plaintext_mb`` (100: a message that decrypts to more is explained, not served).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import threading
from collections.abc import Mapping
from typing import Any

from imapproxy.filtering.api import FilterContext, FilterError
from imapproxy.mime import parse_message

from .pgp_gpg import Gpg, GpgOutputTooLarge, GpgTimeout
from .pgp_message import (
    has_forged_result,
    mentions_pgp,
    open_message,
    strip_result_headers,
)
from .pgp_mime import crlf, header_fields, pgp_mime_encrypted, split_entity

# What stays readable on an encrypted APPEND (clients list and thread by these); the rest of
# the header, Content-* included, goes inside the encrypted entity.
OUTER_HEADERS = frozenset(
    b"from to cc subject date message-id in-reply-to references".split()
)

_SETTINGS = frozenset({
    "gnupg_home", "gpg_binary", "passphrase_file", "timeout",
    "encrypt_append_folders", "encrypt_append_key", "max_plaintext_mb",
})


class PgpFilter:
    """Decrypts and verifies on the way to the client; optionally encrypts APPENDs."""

    name = "pgp"
    version = "1"
    cache_output = False  # decrypted plaintext never touches disk

    def __init__(
        self,
        gnupg_home: str,
        gpg_binary: str = "gpg",
        passphrase_file: str | None = None,
        timeout: float = 30.0,
        encrypt_append_folders: tuple[str, ...] = (),
        encrypt_append_key: str = "%u",
        max_plaintext_mb: int = 100,
    ) -> None:
        self.gnupg_home = gnupg_home
        self.gpg_binary = gpg_binary
        self.passphrase_file = passphrase_file
        self.timeout = timeout
        self.encrypt_append_folders = encrypt_append_folders
        self.encrypt_append_key = encrypt_append_key
        self.max_plaintext_mb = max_plaintext_mb
        self._gpgs: dict[str, Gpg] = {}
        self._gpgs_lock = threading.Lock()

    def fingerprint(self) -> str:
        settings = {
            "gnupg_home": self.gnupg_home,
            "gpg_binary": self.gpg_binary,
            "passphrase_file": self.passphrase_file,
            "encrypt_append_folders": list(self.encrypt_append_folders),
            "encrypt_append_key": self.encrypt_append_key,
            "max_plaintext_mb": self.max_plaintext_mb,
        }
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def apply(self, raw: bytes, context: FilterContext) -> bytes | None:
        if not mentions_pgp(raw):
            return strip_result_headers(raw) if has_forged_result(raw) else None
        try:
            return open_message(raw, lambda: self._gpg(context.user))
        except GpgTimeout as exc:
            raise FilterError(str(exc)) from exc

    def apply_append(self, raw: bytes, context: FilterContext) -> bytes | None:
        """The message encrypted to the user's key as PGP/MIME when it goes into one of
        ``encrypt_append_folders``; None otherwise, or when it is already encrypted."""
        if not self._encrypts(context.mailbox) or _already_encrypted(raw):
            return None
        head, body = split_entity(crlf(raw))
        fields = header_fields(head)
        outer = [(name, text) for name, text in fields if name in OUTER_HEADERS]
        inner = [(name, text) for name, text in fields
                 if name not in OUTER_HEADERS and name != b"mime-version"]
        entity = b"".join(text for _, text in inner) + b"\r\n" + body
        try:
            armored = self._gpg(context.user).encrypt(entity, self._recipient(context.user))
        except (ValueError, GpgTimeout, GpgOutputTooLarge) as exc:
            raise FilterError(str(exc)) from exc
        return pgp_mime_encrypted(outer, armored)

    # --- per user ----------------------------------------------------------------------------

    def _gpg(self, user: str) -> Gpg:
        """The gpg runner of the user's GnuPG home (made once per home)."""
        home = self.gnupg_home.replace("%u", _path_safe(user))
        with self._gpgs_lock:
            gpg = self._gpgs.get(home)
            if gpg is None:
                if not os.path.isdir(home):
                    raise FilterError(f"no GnuPG home {home}")
                try:
                    gpg = Gpg(home, self.gpg_binary, self._passphrase(user), self.timeout,
                              self.max_plaintext_mb << 20)
                except (OSError, ValueError) as exc:
                    raise FilterError(f"cannot run {self.gpg_binary} on {home}: {exc}") from exc
                self._gpgs[home] = gpg
            return gpg

    def _passphrase(self, user: str) -> str | None:
        if self.passphrase_file is None:
            return None
        path = self.passphrase_file.replace("%u", _path_safe(user))
        try:
            with open(path, encoding="utf-8") as file:
                return file.read().rstrip("\r\n")
        except OSError as exc:
            raise FilterError(f"cannot read the passphrase file {path}: {exc}") from exc

    def _recipient(self, user: str) -> str:
        if self.encrypt_append_key == "%u" and "@" in user:
            return f"<{user}>"  # exactly that e-mail address, not any user id containing it
        return self.encrypt_append_key.replace("%u", user)

    def _encrypts(self, mailbox: str) -> bool:
        name = _mailbox_name(mailbox)
        return any(fnmatch.fnmatchcase(name, _mailbox_name(pattern))
                   for pattern in self.encrypt_append_folders)


def _mailbox_name(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name


def _path_safe(user: str) -> str:
    """A user name that can stand in a path: no separators, no dot names."""
    if not user or "/" in user or "\\" in user or "\0" in user or user.startswith("."):
        raise FilterError(f"user name {user!r} cannot name a GnuPG home")
    return user


def _already_encrypted(raw: bytes) -> bool:
    root = parse_message(raw)
    kind = (root.content.type or b"").lower() + b"/" + (root.content.subtype or b"").lower()
    return kind == b"multipart/encrypted" or b"-----BEGIN PGP MESSAGE-----" in raw


def make_filter(settings: Mapping[str, Any]) -> PgpFilter:
    """The filter from its ``[filters.pgp]`` table; ValueError names a bad setting."""
    unknown = sorted(set(settings) - _SETTINGS)
    if unknown:
        raise ValueError(f"[filters.pgp]: unknown setting(s) {', '.join(unknown)}")
    home = settings.get("gnupg_home")
    if not isinstance(home, str) or not home:
        raise ValueError("[filters.pgp]: gnupg_home (a directory, %u = user name) is required")
    binary = _string(settings, "gpg_binary", "gpg")
    passphrase_file = settings.get("passphrase_file")
    if passphrase_file is not None and not isinstance(passphrase_file, str):
        raise ValueError("[filters.pgp]: passphrase_file must be a path")
    timeout = settings.get("timeout", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ValueError("[filters.pgp]: timeout must be a positive number of seconds")
    max_mb = settings.get("max_plaintext_mb", 100)
    if isinstance(max_mb, bool) or not isinstance(max_mb, int) or max_mb <= 0:
        raise ValueError("[filters.pgp]: max_plaintext_mb must be a positive whole number")
    folders = settings.get("encrypt_append_folders", [])
    if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
        raise ValueError("[filters.pgp]: encrypt_append_folders must be a list of names")
    return PgpFilter(
        gnupg_home=home,
        gpg_binary=binary,
        passphrase_file=passphrase_file,
        timeout=float(timeout),
        encrypt_append_folders=tuple(folders),
        encrypt_append_key=_string(settings, "encrypt_append_key", "%u"),
        max_plaintext_mb=max_mb,
    )


def _string(settings: Mapping[str, Any], key: str, default: str) -> str:
    value = settings.get(key, default)
    if not isinstance(value, str) or not value:
        raise ValueError(f"[filters.pgp]: {key} must be a non-empty string")
    return value
