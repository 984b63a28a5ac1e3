"""Reads a Dovecot Maildir++ tree as ``verify`` sees an account: mailbox names, and per
mailbox UIDVALIDITY and messages (UID from ``dovecot-uidlist``, flags from the file name and
``dovecot-keywords``, bytes as Dovecot serves them: bare LF as CRLF). Files Dovecot has not
given a UID yet get the ones it would give (from UIDNEXT on)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from .maildir import LETTER_FLAGS
from .model import MessageMeta, normalize_flags
from .verify import Snapshot

_BARE_LF = re.compile(rb"(?<!\r)\n")


class MaildirTree:
    def __init__(self, root: Path, delimiter: str) -> None:
        self.root = root
        self.delimiter = delimiter  # the source's, so that names compare as they are

    async def mailbox_names(self) -> set[str]:
        names = {"INBOX"} if (self.root / "cur").is_dir() else set()
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root):
                if entry.is_dir() and entry.name.startswith(".") and entry.name not in (
                        ".", "..") and (Path(entry.path) / "cur").is_dir():
                    names.add(self.delimiter.join(entry.name[1:].split(".")))
        return names

    def path(self, name: str) -> Path:
        if name.upper() == "INBOX":
            return self.root
        return self.root / ("." + ".".join(name.split(self.delimiter)))

    async def snapshot(self, name: str) -> Snapshot:
        path = self.path(name)
        uidvalidity, uidnext, uids = _read_uidlist(path / "dovecot-uidlist")
        keywords = _read_keywords(path / "dovecot-keywords")
        files: dict[str, str] = {}  # base name -> "cur/<file>"
        for sub in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError):
                for entry in sorted(os.listdir(path / sub)):
                    files[entry.split(":", 1)[0]] = f"{sub}/{entry}"
        by_uid = {uid: files.pop(base) for uid, base in uids.items() if base in files}
        for offset, base in enumerate(sorted(files)):  # not in the UID list yet
            by_uid[max(uidnext, *(u + 1 for u in by_uid), 1) + offset] = files[base]
        messages: dict[int, tuple[MessageMeta, str]] = {}
        for uid, relative in by_uid.items():
            body = _BARE_LF.sub(b"\r\n", (path / relative).read_bytes())
            suffix = relative.split(":2,", 1)[1] if ":2," in relative else ""
            flags = [LETTER_FLAGS[c] for c in suffix if c in LETTER_FLAGS]
            flags += [keywords[ord(c) - 97] for c in suffix
                      if "a" <= c <= "z" and ord(c) - 97 < len(keywords)]
            meta = MessageMeta(uid, normalize_flags(flags), None, len(body))
            messages[uid] = (meta, hashlib.sha256(body).hexdigest())
        return Snapshot(uidvalidity, messages)


def _read_uidlist(path: Path) -> tuple[int, int, dict[int, str]]:
    """(UIDVALIDITY, UIDNEXT, UID -> base name) of a version 3 dovecot-uidlist."""
    try:
        lines = path.read_text("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return 0, 1, {}
    header = lines[0].split() if lines else []
    fields = {word[0]: word[1:] for word in header[1:] if word}
    uids: dict[int, str] = {}
    for line in lines[1:]:
        number, _, rest = line.partition(" ")
        _, colon, base = rest.partition(":")
        if number.isdigit() and colon:
            uids[int(number)] = base
    validity = fields.get("V", "0")
    uidnext = fields.get("N", "1")
    return (int(validity) if validity.isdigit() else 0,
            int(uidnext) if uidnext.isdigit() else 1, uids)


def _read_keywords(path: Path) -> list[str]:
    keywords: dict[int, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text("utf-8", "replace").splitlines():
            number, _, keyword = line.partition(" ")
            if number.isdigit() and keyword:
                keywords[int(number)] = keyword
    return [keywords.get(i, "") for i in range(max(keywords, default=-1) + 1)]
