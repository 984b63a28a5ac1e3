"""Start as root, bind the ports, then run as an unprivileged user; and refuse to start with
a cache or key directory that anyone may write to (mail and keys could be swapped there)."""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import stat
from collections.abc import Iterable
from pathlib import Path

from ..config import Config

log = logging.getLogger(__name__)


class UnsafePermissions(PermissionError):
    """A directory the proxy trusts is writable by everyone. ``filename`` is the path, so
    the command line shows ``error: PATH: reason``."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(errno.EPERM, reason, str(path))


def check_directory(path: Path, what: str) -> None:
    """Refuse a world-writable directory; warn when a group may read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return  # created later, with safe permissions
    if mode & stat.S_IWOTH:
        raise UnsafePermissions(path, f"the {what} is writable by everyone (mode "
                                      f"{stat.S_IMODE(mode):o}); run: chmod o-w {path}")
    if mode & stat.S_IRGRP:
        log.warning("%s %s is readable by its group (mode %o)", what, path, stat.S_IMODE(mode))


def trusted_directories(config: Config) -> list[tuple[Path, str]]:
    dirs = [(config.cache_dir, "cache directory")]
    for listener in config.listeners:
        if listener.key_file is not None:
            dirs.append((listener.key_file.parent, "key directory"))
    return dirs


def check_startup_permissions(config: Config) -> None:
    for path, what in trusted_directories(config):
        check_directory(path, what)


def drop_privileges(user: str, group: str | None, own: Iterable[Path] = ()) -> None:
    """Become ``user`` (and ``group``, default: the user's primary group) for good. Only
    root may do that; the directories in ``own`` are handed over first, so the proxy can
    still write its cache. Raises PermissionError naming the setting."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PermissionError(errno.EINVAL, f"no such user {user!r}", "server.user") from None
    try:
        gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    except KeyError:
        raise PermissionError(errno.EINVAL, f"no such group {group!r}",
                              "server.group") from None
    if os.getuid() != 0:
        if os.getuid() != entry.pw_uid:
            raise PermissionError(errno.EPERM, f"only root can switch to user {user!r}",
                                  "server.user")
        return
    for path in own:
        _chown_tree(path, entry.pw_uid, gid)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(entry.pw_uid)
    if os.getuid() != entry.pw_uid or os.geteuid() != entry.pw_uid:
        raise PermissionError(errno.EPERM, f"could not switch to user {user!r}", "server.user")
    log.info("running as user %s (uid %d, gid %d)", user, entry.pw_uid, gid)


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    if not root.exists():
        return
    os.chown(root, uid, gid)
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(base, name), uid, gid, follow_symlinks=False)
