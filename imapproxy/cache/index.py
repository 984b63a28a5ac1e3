"""The per-user index: UIDVALIDITY per mailbox, per-message facts, hit/miss counters.

One SQLite file per user cache (``index.sqlite3``, 0600), next to the message store. What it
keeps for a message (UID, RFC822.SIZE, INTERNALDATE, the caller's opaque MIME-structure blob)
is immutable for its (mailbox, UIDVALIDITY, UID), like the message bytes, so it can answer
without the bytes, and a cached message never has to be parsed again.

Rows carry their UIDVALIDITY in the primary key and every read filters on it, so rows of an
old UIDVALIDITY never answer for the new one even if dropping them were interrupted.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from imapproxy.cache._fs import private_file

SCHEMA_VERSION = "1"
_MAX_PARAMS = 500  # UIDs per "IN (...)" query, well below SQLite's limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailboxes (
    name BLOB PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    last_used REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    mailbox BLOB NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    size INTEGER,
    internaldate TEXT,
    structure BLOB,
    PRIMARY KEY (mailbox, uidvalidity, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""

COUNTERS = ("hits", "misses", "corrupt", "stored", "evicted")


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """What the index knows about one message. ``None`` means "not known (yet)"; in
    :meth:`MailboxCache.update_index` it means "leave as it is"."""

    uid: int
    size: int | None = None
    internaldate: str | None = None  # the upstream's INTERNALDATE text, e.g. 17-Jul-1996 ...
    structure: bytes | None = None  # opaque, from imapproxy.mime (serialised Part tree)


class MailboxIndex(Mapping[int, IndexEntry]):
    """A snapshot of (part of) a mailbox's index: UID -> IndexEntry, iterated in UID order."""

    def __init__(self, entries: Iterable[IndexEntry] = ()) -> None:
        self._entries = {e.uid: e for e in sorted(entries, key=lambda e: e.uid)}

    def __getitem__(self, uid: int) -> IndexEntry:
        return self._entries[uid]

    def __iter__(self) -> Iterator[int]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def uids(self) -> list[int]:
        return list(self._entries)

    def __repr__(self) -> str:
        return f"MailboxIndex({len(self)} entries)"


@dataclass(frozen=True, slots=True)
class MailboxUsage:
    """For eviction: a mailbox's index rows, when it was last used, their estimated bytes."""

    name: bytes
    last_used: float
    rows: int
    bytes: int


class IndexDB:
    """The index database of one user cache. Thread-safe (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        private_file(path)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(path, timeout=10, isolation_level=None,
                                    check_same_thread=False)
        with self._lock:
            con = self._con
            con.execute("PRAGMA auto_vacuum = FULL")  # before the first table exists
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            con.executescript(_SCHEMA)
            con.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            con.executemany("INSERT OR IGNORE INTO counters VALUES (?, 0)",
                            [(name,) for name in COUNTERS])
        self._pending = dict.fromkeys(COUNTERS, 0)
        self._pending_total = 0
        self._last_flush = time.monotonic()

    # ------------------------------------------------------------------------- mailboxes

    def select_mailbox(self, name: bytes, uidvalidity: int) -> int | None:
        """Record ``uidvalidity`` for ``name``; return the previous one if it differed
        (the caller drops the old entries), else None. Index rows of other UIDVALIDITYs are
        deleted here."""
        now = time.time()
        with self._lock:
            row = self._con.execute("SELECT uidvalidity FROM mailboxes WHERE name = ?",
                                    (name,)).fetchone()
            old = None if row is None else int(row[0])
            if old == uidvalidity:
                self._con.execute("UPDATE mailboxes SET last_used = ? WHERE name = ?",
                                  (now, name))
                return None
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.execute("DELETE FROM messages WHERE mailbox = ? AND uidvalidity != ?",
                                  (name, uidvalidity))
                self._con.execute("INSERT OR REPLACE INTO mailboxes VALUES (?, ?, ?)",
                                  (name, uidvalidity, now))
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")
            return old

    def touch_mailbox(self, name: bytes) -> None:
        with self._lock:
            self._con.execute("UPDATE mailboxes SET last_used = ? WHERE name = ?",
                              (time.time(), name))

    def mailboxes(self) -> dict[bytes, int]:
        """Mailbox name -> the UIDVALIDITY last seen."""
        with self._lock:
            rows = self._con.execute("SELECT name, uidvalidity FROM mailboxes").fetchall()
        return {bytes(name): int(uv) for name, uv in rows}

    # --------------------------------------------------------------------------- entries

    def entries(self, name: bytes, uidvalidity: int, uids: Iterable[int] | None,
                structure: bool = True) -> list[IndexEntry]:
        columns = "uid, size, internaldate, " + ("structure" if structure else "NULL")
        base = (f"SELECT {columns} FROM messages WHERE mailbox = ? AND uidvalidity = ?")
        with self._lock:
            if uids is None:
                rows = self._con.execute(base + " ORDER BY uid", (name, uidvalidity)).fetchall()
            else:
                wanted = sorted(set(uids))
                rows = []
                for start in range(0, len(wanted), _MAX_PARAMS):
                    chunk = wanted[start:start + _MAX_PARAMS]
                    marks = ",".join("?" * len(chunk))
                    rows += self._con.execute(f"{base} AND uid IN ({marks}) ORDER BY uid",
                                              (name, uidvalidity, *chunk)).fetchall()
        return [IndexEntry(int(uid), size, date, None if blob is None else bytes(blob))
                for uid, size, date, blob in rows]

    def uids(self, name: bytes, uidvalidity: int) -> list[int]:
        with self._lock:
            rows = self._con.execute(
                "SELECT uid FROM messages WHERE mailbox = ? AND uidvalidity = ? ORDER BY uid",
                (name, uidvalidity)).fetchall()
        return [int(uid) for (uid,) in rows]

    def update(self, name: bytes, uidvalidity: int, entries: Iterable[IndexEntry]) -> None:
        rows = [(name, uidvalidity, e.uid, e.size, e.internaldate,
                 None if e.structure is None else bytes(e.structure)) for e in entries]
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.executemany(
                    "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (mailbox, uidvalidity, uid) DO UPDATE SET"
                    " size = COALESCE(excluded.size, size),"
                    " internaldate = COALESCE(excluded.internaldate, internaldate),"
                    " structure = COALESCE(excluded.structure, structure)",
                    rows)
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def delete(self, name: bytes, uidvalidity: int, uids: Iterable[int]) -> None:
        wanted = sorted(set(uids))
        with self._lock:
            for start in range(0, len(wanted), _MAX_PARAMS):
                chunk = wanted[start:start + _MAX_PARAMS]
                marks = ",".join("?" * len(chunk))
                self._con.execute(
                    f"DELETE FROM messages WHERE mailbox = ? AND uidvalidity = ?"
                    f" AND uid IN ({marks})", (name, uidvalidity, *chunk))

    def drop_rows(self, name: bytes) -> int:
        """Delete the mailbox's message rows (every UIDVALIDITY); keep its UIDVALIDITY."""
        with self._lock:
            cursor = self._con.execute("DELETE FROM messages WHERE mailbox = ?", (name,))
            return cursor.rowcount

    def usage(self) -> list[MailboxUsage]:
        with self._lock:
            rows = self._con.execute(
                "SELECT m.mailbox, COALESCE(b.last_used, 0), COUNT(*),"
                " SUM(COALESCE(length(m.structure), 0) + length(m.mailbox)"
                "     + COALESCE(length(m.internaldate), 0) + 24)"
                " FROM messages m LEFT JOIN mailboxes b ON b.name = m.mailbox"
                " GROUP BY m.mailbox").fetchall()
        return [MailboxUsage(bytes(name), float(t), int(n), int(size))
                for name, t, n, size in rows]

    def row_count(self) -> int:
        with self._lock:
            (count,) = self._con.execute("SELECT COUNT(*) FROM messages").fetchone()
        return int(count)

    def size(self) -> int:
        """Bytes of the database (pages in use; the WAL is not counted)."""
        with self._lock:
            (pages,) = self._con.execute("PRAGMA page_count").fetchone()
            (page_size,) = self._con.execute("PRAGMA page_size").fetchone()
        return int(pages) * int(page_size)

    # -------------------------------------------------------------------------- counters

    def count(self, name: str, n: int = 1, *, flush: bool = True) -> None:
        """Add to a counter; written out in batches (every 64 events or 10 s), unless
        ``flush`` is false (the caller is the event loop: a later count or flush writes)."""
        with self._lock:
            self._pending[name] += n
            self._pending_total += n
            due = flush and (self._pending_total >= 64
                             or time.monotonic() - self._last_flush > 10)
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending = [(n, name) for name, n in self._pending.items() if n]
            self._pending = dict.fromkeys(COUNTERS, 0)
            self._pending_total = 0
            self._last_flush = time.monotonic()
            if pending:
                self._con.executemany("UPDATE counters SET value = value + ? WHERE name = ?",
                                      pending)

    def counters(self) -> dict[str, int]:
        with self._lock:
            rows = self._con.execute("SELECT name, value FROM counters").fetchall()
            saved = {str(name): int(value) for name, value in rows}
            return {name: saved.get(name, 0) + self._pending.get(name, 0) for name in COUNTERS}

    def wipe(self) -> None:
        """Delete everything but the counters' names (for purge)."""
        with self._lock:
            self._pending = dict.fromkeys(COUNTERS, 0)
            self._pending_total = 0
            self._con.execute("DELETE FROM messages")
            self._con.execute("DELETE FROM mailboxes")
            self._con.execute("UPDATE counters SET value = 0")

    def close(self) -> None:
        try:
            self.flush()
        except sqlite3.Error:
            pass
        with self._lock:
            self._con.close()
