"""Private files and directories: every directory the cache creates is 0700, every file 0600.

The modes are set explicitly (``chmod`` after creating), so they do not depend on the umask,
and the process-wide umask is never changed (other threads may be creating files).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import diskcache  # type: ignore[import-untyped]

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create ``path`` (0700) if missing; an existing directory is set to 0700 as well."""
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
    os.chmod(path, DIR_MODE)


def private_dirs(path: Path, base: Path) -> None:
    """Create every missing directory from ``base`` (which exists) down to ``path``, 0700."""
    missing = []
    current = path
    while current != base and not current.is_dir():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=DIR_MODE)
            os.chmod(directory, DIR_MODE)


def private_file(path: Path) -> None:
    """Create ``path`` empty (0600) if missing, or set an existing one to 0600.

    Used before SQLite opens a database: SQLite gives its -wal and -shm files the mode of
    the database file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + rename), mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        with open(fd, "wb", closefd=False) as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def tree_size(path: Path) -> int:
    """Bytes in the regular files under ``path`` (0 if it is gone)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


class PrivateDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache has no type hints
    """diskcache's Disk, creating value files 0600 and their sub-directories 0700.

    diskcache writes values of ``disk_min_file_size`` bytes or more to files of their own in
    two levels of sub-directories (``ab/cd/<hex>.val``); the stock ``Disk._write`` uses
    ``open(path, "xb")`` and ``os.makedirs``, whose modes follow the umask."""

    def _write(
        self,
        full_path: str,
        iterator: Iterable[Any],
        mode: str,
        encoding: str | None = None,
    ) -> int:
        base = Path(self._directory)
        target = Path(full_path)
        for attempt in range(1, 11):
            with contextlib.suppress(OSError):
                private_dirs(target.parent, base)
            try:
                # Another process may have removed the (empty) directory in between.
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             FILE_MODE)
            except OSError:
                if attempt == 10:
                    raise
                continue
            os.fchmod(fd, FILE_MODE)
            with open(fd, mode.replace("x", "w"), encoding=encoding) as writer:
                size = 0
                for chunk in iterator:
                    size += len(chunk)
                    writer.write(chunk)
                return size
        raise AssertionError("unreachable")
