"""A Maildir++ tree that Dovecot serves with the source's UIDVALIDITY and UIDs.

Layout (Dovecot's default for ``mail_location = maildir:PATH``): INBOX is the root
(``cur/ new/ tmp/``); mailbox ``A/B`` is ``.A.B/`` with an empty ``maildirfolder`` file;
names stay in modified UTF-7 as on the wire. In each mailbox directory:

- messages in ``cur/`` named ``<mtime>.M<uid>V<uidvalidity>.imapproxy,S=<size>,W=<vsize>:2,<flags>``:
  the base name is derived from (UIDVALIDITY, UID), so re-writing a message after a crash
  replaces it instead of duplicating it; flags are ``D F R S T`` then keyword letters ``a..z``;
  the file's mtime is the INTERNALDATE;
- ``dovecot-keywords``: ``<index> <keyword>`` lines (letter ``a`` is index 0, 26 at most);
- ``dovecot-uidlist``: ``3 V<uidvalidity> N<uidnext> G<guid>`` then ``<uid> :<base name>``.

The root has ``subscriptions``: ``V\\t2``, an empty line, then one name per line with the
hierarchy separator written as a tab. Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .errors import MigrateError
from .model import MailboxInfo, MailboxStatus, Message
from .state import MailboxState

FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S",
                "\\Deleted": "T"}
LETTER_FLAGS = {v: k for k, v in FLAG_LETTERS.items()}
MAX_KEYWORDS = 26
_BASE_RE = re.compile(r"^\d+\.M(\d+)V(\d+)\.imapproxy,")
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}


def internaldate_epoch(text: str | None) -> float | None:
    """``"04-Mar-2024 09:30:00 +0100"`` (day may be space-padded) as a Unix time."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)",
                     text.strip())
    if m is None or m.group(2).lower() not in _MONTHS:
        return None
    day, _, year, hh, mm, ss, sign, tzh, tzm = m.groups()
    offset = f"{sign}{tzh}{tzm}"
    when = datetime.strptime(f"{year}-{_MONTHS[m.group(2).lower()]:02d}-{int(day):02d} "
                             f"{hh}:{mm}:{ss} {offset}", "%Y-%m-%d %H:%M:%S %z")
    return when.timestamp()


def virtual_size(body: bytes) -> int:
    """RFC822.SIZE as Dovecot counts it: every bare LF counts as CRLF."""
    return len(body) + body.count(b"\n") - body.count(b"\r\n")


def write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)


@dataclass
class MaildirFolder:
    """One mailbox directory and what is on disk in it (UID -> file name)."""

    path: Path
    uidvalidity: int = 0
    files: dict[int, str] = field(default_factory=dict)  # uid -> "cur/<name>"
    keywords: list[str] = field(default_factory=list)

    def scan(self) -> None:
        self.files.clear()
        for sub in ("cur", "new"):
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(self.path / sub):
                    m = _BASE_RE.match(entry.name)
                    if m and int(m.group(2)) == self.uidvalidity:
                        self.files[int(m.group(1))] = f"{sub}/{entry.name}"
        self.keywords = []
        with contextlib.suppress(FileNotFoundError):
            pairs: list[tuple[int, str]] = []
            for line in (self.path / "dovecot-keywords").read_text("utf-8").splitlines():
                number, _, keyword = line.partition(" ")
                if number.isdigit() and keyword:
                    pairs.append((int(number), keyword))
            self.keywords = [""] * (max((i for i, _ in pairs), default=-1) + 1)
            for position, keyword in pairs:
                self.keywords[position] = keyword

    def suffix(self, flags: tuple[str, ...]) -> str:
        letters = sorted(FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS)
        keyword_letters: list[str] = []
        for flag in flags:
            if flag.startswith("\\"):
                continue
            if flag not in self.keywords:
                if len(self.keywords) >= MAX_KEYWORDS:
                    raise MigrateError(f"keyword {flag!r}: a Maildir holds at most "
                                       f"{MAX_KEYWORDS} keywords per mailbox")
                self.keywords.append(flag)
                self._write_keywords()
            keyword_letters.append(chr(ord("a") + self.keywords.index(flag)))
        return ":2," + "".join(letters) + "".join(sorted(keyword_letters))

    def _write_keywords(self) -> None:
        text = "".join(f"{i} {k}\n" for i, k in enumerate(self.keywords) if k)
        write_atomically(self.path / "dovecot-keywords", text.encode("utf-8"))


class MaildirWriter:
    """The Maildir destination (see the module docstring for the format)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders: dict[str, MaildirFolder] = {}

    def folder_path(self, info: MailboxInfo) -> Path:
        if info.name.upper() == "INBOX":
            return self.root
        parts = info.name.split(info.delimiter) if info.delimiter else [info.name]
        if any(not p or "." in p or "/" in p or any(ord(c) < 0x20 for c in p) for p in parts):
            raise MigrateError(f"mailbox {info.display_name!r}: an empty name part, or one "
                               "with '.', '/' or a control character, cannot be stored in a "
                               "Maildir++ layout")
        return self.root / ("." + ".".join(parts))

    async def prepare(self, info: MailboxInfo, status: MailboxStatus,
                      state: MailboxState) -> set[int]:
        """Create the mailbox directory; returns the UIDs already on disk. A UIDVALIDITY
        different from what is on disk empties the mailbox (a full re-copy follows)."""
        path = self.folder_path(info)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("", "cur", "new", "tmp"):
            (path / sub).mkdir(mode=0o700, exist_ok=True)
        if path != self.root:
            (path / "maildirfolder").touch(mode=0o600)
        on_disk = self._uidlist_validity(path)
        if on_disk is not None and on_disk != status.uidvalidity:
            self._empty(path)
        folder = MaildirFolder(path, status.uidvalidity)
        folder.scan()
        self.folders[info.name] = folder
        return set(folder.files)

    async def write(self, info: MailboxInfo, messages: list[Message],
                    state: MailboxState) -> dict[int, int]:
        """Write *messages* (a thread: file I/O); returns source UID -> UID (the same)."""
        return await asyncio.to_thread(self._write, self.folders[info.name], messages)

    @staticmethod
    def _write(folder: MaildirFolder, messages: list[Message]) -> dict[int, int]:
        for message in messages:
            meta = message.meta
            mtime = internaldate_epoch(meta.internaldate)
            base = (f"{int(mtime or 0)}.M{meta.uid}V{folder.uidvalidity}.imapproxy,"
                    f"S={len(message.body)},W={virtual_size(message.body)}")
            name = f"cur/{base}{folder.suffix(meta.flags)}"
            temp = folder.path / "tmp" / base
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "wb") as out:
                out.write(message.body)
            if mtime is not None:
                os.utime(temp, (mtime, mtime))
            old = folder.files.get(meta.uid)
            os.replace(temp, folder.path / name)
            if old is not None and old != name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder.path / old)
            folder.files[meta.uid] = name
        return {m.meta.uid: m.meta.uid for m in messages}

    async def set_flags(self, info: MailboxInfo, uid: int, flags: tuple[str, ...]) -> None:
        folder = self.folders[info.name]
        old = folder.files.get(uid)
        if old is None:
            return
        base = old.split("/", 1)[1].split(":2,", 1)[0]
        new = f"cur/{base}{folder.suffix(flags)}"
        if new != old:
            os.replace(folder.path / old, folder.path / new)
            folder.files[uid] = new

    async def remove(self, info: MailboxInfo, uids: list[int]) -> None:
        """*uids*: a Maildir keeps the source's UIDs, so destination UID = source UID."""
        folder = self.folders[info.name]
        for uid in uids:
            old = folder.files.pop(uid, None)
            if old is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder.path / old)

    async def finish(self, info: MailboxInfo, status: MailboxStatus) -> None:
        """Write dovecot-uidlist (under Dovecot's dot-lock) for what is on disk now."""
        folder = self.folders[info.name]
        path = folder.path / "dovecot-uidlist"
        guid = uuid.uuid4().hex
        with contextlib.suppress(FileNotFoundError):
            for word in path.read_text("utf-8").split("\n", 1)[0].split():
                if word.startswith("G") and len(word) == 33:
                    guid = word[1:]
        uidnext = max([status.uidnext, *(u + 1 for u in folder.files)])
        lines = [f"3 V{folder.uidvalidity} N{uidnext} G{guid}\n"]
        lines += [f"{uid} :{folder.files[uid].split('/', 1)[1].split(':2,', 1)[0]}\n"
                  for uid in sorted(folder.files)]
        with _dotlock(folder.path / "dovecot-uidlist.lock"):
            write_atomically(path, "".join(lines).encode("utf-8"))

    async def set_subscriptions(self, mailboxes: list[MailboxInfo]) -> None:
        names = [m.name.replace(m.delimiter, "\t") if m.delimiter else m.name
                 for m in mailboxes if m.subscribed]
        text = "V\t2\n\n" + "".join(f"{n}\n" for n in sorted(names))
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(self.root / "subscriptions", text.encode("utf-8"))

    async def reconnect(self) -> bool:
        return False  # nothing to reconnect

    async def close(self) -> None:
        return None

    @staticmethod
    def _uidlist_validity(path: Path) -> int | None:
        with contextlib.suppress(FileNotFoundError):
            for word in (path / "dovecot-uidlist").read_text("utf-8").split("\n", 1)[0].split()[1:]:
                if word.startswith("V") and word[1:].isdigit():
                    return int(word[1:])
        return None

    @staticmethod
    def _empty(path: Path) -> None:
        """Drop the old generation: its messages, keywords, UID list and Dovecot's indexes."""
        for sub in ("cur", "new", "tmp"):
            shutil.rmtree(path / sub, ignore_errors=True)
            (path / sub).mkdir(mode=0o700)
        for entry in os.scandir(path):
            if entry.is_file() and (entry.name.startswith("dovecot.index")
                                    or entry.name in ("dovecot-uidlist", "dovecot-keywords")):
                os.unlink(entry.path)


@contextlib.contextmanager
def _dotlock(path: Path) -> Iterator[None]:
    """Dovecot's dot-lock on dovecot-uidlist; a lock older than 2 minutes is stale."""
    deadline = time.monotonic() + 30
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
            break
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - path.stat().st_mtime > 120:
                    os.unlink(path)
                    continue
            if time.monotonic() > deadline:
                raise MigrateError(f"{path} is held by someone else") from None
            time.sleep(0.05)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
