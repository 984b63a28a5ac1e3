"""A throwaway real Dovecot (Debian's ``dovecot-imapd``) for the test suite and ``imapproxy demo``.

``DovecotServer(base_dir).start()`` writes a self-contained ``dovecot.conf`` in *base_dir*
(nothing from ``/etc/dovecot`` is read), runs ``dovecot -F -c CONF`` as a child process on
127.0.0.1 and waits until the IMAP port greets (typically 50 ms). *base_dir* holds::

    dovecot.conf   the generated configuration
    dovecot.log    Dovecot's log (its tail is in every start error; dovecot.stderr too)
    passwd.d/USER  one passwd-file per user, plain-text password (see add_user)
    mail/USER/Maildir   the user's mail (Maildir, LAYOUT=fs or Maildir++, separator "/")
    state/         Dovecot's state_dir
    cert.pem, key.pem   with tls=True: a self-signed certificate for 127.0.0.1 / localhost

Unix sockets live in a short-lived directory under /tmp (socket paths have a length limit).
Users added while Dovecot runs can log in at once; mail, users and the log survive stop(),
so a server can be started again on the same *base_dir*.

Who runs what (see ``_identities``): as a normal user, every Dovecot process runs as that user.
As root (CI containers) Dovecot refuses to run imap-login or mail processes as root, so those
run as ``dovenull`` and ``nobody``; the mail processes chroot into ``mail/`` first, so the
parents of *base_dir* may be private to root (pytest's tmp directories are 0700).

Not for production: plain-text passwords, plaintext authentication, no auth penalty.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "DovecotError",
    "DovecotServer",
    "ensure_mailbox",
    "find_dovecot",
    "imap_utf7_encode",
    "mailbox_arg",
]

HOST = "127.0.0.1"
START_TIMEOUT = 15.0  # seconds until the IMAP port must greet
STOP_TIMEOUT = 10.0

_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_NAME_RE = re.compile(r"^[A-Za-z0-9_@-][A-Za-z0-9._@-]*$")  # Dovecot's auth_username_chars


_RUNNING: weakref.WeakSet[DovecotServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """Do not leave Dovecots behind when the interpreter exits without stop()."""
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop()


class DovecotError(RuntimeError):
    """Dovecot could not be started, or a helper operation on it failed."""


def find_dovecot() -> str | None:
    """Path of the ``dovecot`` binary, or None. Looks in PATH, then the sbin directories
    (a normal user's PATH often lacks /usr/sbin)."""
    found = shutil.which("dovecot")
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = Path(directory) / "dovecot"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def imap_utf7_encode(name: str) -> str:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 section 5.1.3)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
            out.append("&" + b64 + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _quote(text: str) -> str:
    """An IMAP quoted string (mailbox names given to imaplib, which never quotes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DovecotServer:
    """A Dovecot child process on 127.0.0.1 with its configuration, users and mail in
    *base_dir*. Use as a context manager, or call :meth:`start` and :meth:`stop`."""

    def __init__(self, base_dir: Path, *, port: int = 0, tls: bool = False,
                 layout: str = "fs") -> None:
        """*layout*: ``"fs"`` (mailbox ``a/b`` is ``Maildir/a/b``) or ``"maildir++"``
        (Dovecot's default, ``Maildir/.a.b``; serves what ``imapproxy migrate`` writes)."""
        if layout not in ("fs", "maildir++"):
            raise ValueError(f"unknown Maildir layout {layout!r}")
        self.layout = layout
        self.base_dir = Path(base_dir).resolve()
        self.host = HOST
        self._requested_port = port
        self.port = port
        self.tls = tls
        self.ssl_port: int | None = None
        self.cert_file: Path | None = None
        self.key_file: Path | None = None
        self.config_file = self.base_dir / "dovecot.conf"
        self.passwd_dir = self.base_dir / "passwd.d"  # one passwd-file per user, see add_user
        self.mail_dir = self.base_dir / "mail"
        self.log_file = self.base_dir / "dovecot.log"
        self._state_dir = self.base_dir / "state"
        self._run_dir: Path | None = None  # short path in /tmp: unix sockets live there
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        binary = find_dovecot()
        if binary is None:
            raise DovecotError("dovecot is not installed (apt install dovecot-imapd)")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.mail_dir.mkdir(exist_ok=True)
        ids = _identities()
        if ids.chroot:  # the mail user must own the chroot it writes the users' homes into
            os.chown(self.mail_dir, ids.mail_uid, ids.mail_gid)
        self._state_dir.mkdir(exist_ok=True)
        self.passwd_dir.mkdir(exist_ok=True)
        if self.tls and self.cert_file is None:
            self._make_certificate()
        # Port 0 means "any free port": find one now, and retry with another if someone
        # else grabbed it between our probe and Dovecot's bind.
        attempts = 3 if self._requested_port == 0 else 1
        for attempt in range(attempts):
            self.port = self._requested_port or _free_port()
            self.ssl_port = _free_port() if self.tls else None
            try:
                self._launch(binary)
                return
            except DovecotError:
                if attempt == attempts - 1 or "in use" not in self._log_tail():
                    raise

    def _launch(self, binary: str) -> None:
        self._run_dir = Path(tempfile.mkdtemp(prefix="imapproxy-dovecot-"))
        os.chmod(self._run_dir, 0o755)
        self.config_file.write_text(self._config_text())
        with contextlib.suppress(FileNotFoundError):
            self.log_file.unlink()
        self.log_file.touch()
        stderr_path = self.base_dir / "dovecot.stderr"
        with open(stderr_path, "wb") as stderr:
            self._proc = subprocess.Popen(
                [binary, "-F", "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # Ctrl-C in a terminal goes to us, not to Dovecot
            )
        deadline = time.monotonic() + START_TIMEOUT
        problem = "timed out"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                problem = f"dovecot exited with status {self._proc.returncode}"
                break
            if self._greets():
                _RUNNING.add(self)
                return
            if "Fatal:" in self._log_tail():
                problem = "a Dovecot process failed"
                break
            time.sleep(0.05)
        self._kill()
        raise DovecotError(
            f"Dovecot did not start on {self.host}:{self.port} ({problem}); config "
            f"{self.config_file}; log tail:\n{self._log_tail()}"
        )

    def _greets(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.settimeout(2.0)
                return sock.recv(1024).startswith(b"* OK")
        except OSError:
            return False

    def _log_tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.base_dir / "dovecot.stderr", self.log_file):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"

    def stop(self) -> None:
        """Stop Dovecot (SIGTERM, then SIGKILL) and remove its runtime directory.
        Idempotent; mail, users and the log stay in *base_dir*."""
        self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        _RUNNING.discard(self)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                # The master is gone or stuck: kill its whole process group.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        elif proc is not None:
            proc.wait()
        if proc is not None:
            # Dovecot's children are in the master's process group (start_new_session): any
            # that outlived the master go too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<DovecotServer {self.host}:{self.port} {state} in {self.base_dir}>"

    # ------------------------------------------------------------------ configuration

    def _make_certificate(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise DovecotError("openssl is not installed (apt install openssl)")
        self.cert_file = self.base_dir / "cert.pem"
        self.key_file = self.base_dir / "key.pem"
        result = subprocess.run(
            [
                openssl, "req", "-x509", "-nodes", "-days", "30",
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-keyout", str(self.key_file), "-out", str(self.cert_file),
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise DovecotError(
                "openssl could not make a certificate: " + result.stderr.decode(errors="replace")
            )
        os.chmod(self.key_file, 0o600)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's self-signed certificate."""
        if self.cert_file is None:
            raise DovecotError("this DovecotServer was not started with tls=True")
        return ssl.create_default_context(cafile=str(self.cert_file))

    def _config_text(self) -> str:
        ids = _identities()
        if ids.chroot:
            # Mail processes run chrooted into mail_dir: root does the chroot (so the parents
            # of base_dir may be private to root, like pytest's tmp dirs), then drops to the
            # unprivileged mail user, and home is relative to the chroot.
            mail_user_settings = f"mail_chroot = {self.mail_dir}\n"
            home = "/%u"
        else:
            mail_user_settings = ""
            home = f"{self.mail_dir}/%u"
        assert self._run_dir is not None
        if self.tls:
            assert self.cert_file is not None and self.key_file is not None
            ssl_settings = (
                f"ssl = yes\nssl_cert = <{self.cert_file}\nssl_key = <{self.key_file}\n"
            )
            imaps = f"  inet_listener imaps {{\n    port = {self.ssl_port}\n    ssl = yes\n  }}\n"
        else:
            ssl_settings = "ssl = no\n"
            imaps = "  inet_listener imaps {\n    port = 0\n  }\n"
        mailboxes = "".join(
            f"  mailbox {name} {{\n    auto = subscribe\n    special_use = \\{name}\n  }}\n"
            for name in ("Drafts", "Sent", "Trash", "Junk")
        )
        return f"""\
# Written by imapproxy.devserver: a throwaway test Dovecot. Not for production.
protocols = imap
listen = {self.host}
base_dir = {self._run_dir}
state_dir = {self._state_dir}
log_path = {self.log_file}
info_log_path = {self.log_file}
debug_log_path = {self.log_file}
instance_name = imapproxy-dovecot-{self.port}

# Who runs what: see _identities().
default_internal_user = {ids.internal_user}
default_internal_group = {ids.internal_group}
default_login_user = {ids.login_user}
mail_uid = {ids.mail_uid}
mail_gid = {ids.mail_gid}
first_valid_uid = {ids.mail_uid}
last_valid_uid = {ids.mail_uid}
first_valid_gid = {ids.mail_gid}
last_valid_gid = {ids.mail_gid}
{mail_user_settings}
{ssl_settings}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_cache_size = 0
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_dir}/%u
}}
userdb {{
  driver = static
  args = home={home}
}}

mail_location = maildir:~/Maildir{":LAYOUT=fs" if self.layout == "fs" else ""}
mail_plugins =
mail_fsync = never
mail_max_userip_connections = 1000
mailbox_idle_check_interval = 1 secs
imap_idle_notify_interval = 10 secs
namespace inbox {{
  inbox = yes
  separator = /
{mailboxes}}}

service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.port}
  }}
{imaps}  service_count = 0
  process_min_avail = 1
  client_limit = 1000
}}
service imap {{
  process_limit = 1000
}}
service anvil {{
  chroot =
  # No auth penalty: otherwise each failed login from 127.0.0.1 delays the next logins of the
  # whole test session (2, 4, 8, up to 15 s). Auth disables the penalty when it cannot connect
  # to this socket, and mode 0 means the socket is not created.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  client_limit = 5000
}}
"""

    # ------------------------------------------------------------------ users and mail

    def add_user(self, name: str, password: str) -> None:
        """Add a user, or set a user's password; works while Dovecot runs.

        Each user has a passwd-file of their own (``passwd.d/<name>``; the passdb path is
        ``passwd.d/%u``). One shared file would not do: Dovecot re-reads a changed passwd-file
        (mtime or size) but stats it at most once per second, so a user added right after a
        login would be unknown for up to a second. A new user's new file is read on first use.
        (Changing an existing user's password can still take a second to be seen.)
        """
        if not _NAME_RE.match(name):
            raise ValueError(f"unusable user name: {name!r} (letters, digits, . _ @ -)")
        if any(ch in password for ch in ":\r\n\0"):
            raise ValueError("password must not contain ':', CR, LF or NUL")
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        self.passwd_dir.mkdir(parents=True, exist_ok=True)
        home = self.mail_dir / name
        if not home.exists():  # Dovecot would create it, but logs an error on the way
            home.mkdir()
            ids = _identities()
            if ids.chroot:
                os.chown(home, ids.mail_uid, ids.mail_gid)
        # Write and rename: Dovecot never reads half a file.
        target = self.passwd_dir / name
        temp = self.passwd_dir / f".{name}.tmp"
        temp.write_text(f"{name}:{{PLAIN}}{password}::::::\n", encoding="utf-8")
        os.chmod(temp, 0o600)
        os.replace(temp, target)

    def adopt(self, path: Path) -> None:
        """Give a Maildir written by another program (``imapproxy migrate``) to the user the
        mail processes run as (only needed as root, where that is ``nobody``)."""
        ids = _identities()
        if not ids.chroot:
            return
        for root, dirs, files in os.walk(path):
            for name in (root, *(os.path.join(root, n) for n in dirs + files)):
                os.chown(name, ids.mail_uid, ids.mail_gid)

    def connect(self, user: str | None = None, password: str | None = None) -> imaplib.IMAP4:
        """An imaplib connection to the plain IMAP port, logged in when *user* is given."""
        imap = imaplib.IMAP4(self.host, self.port, timeout=30)
        if user is not None:
            try:
                imap.login(user, password or "")
            except BaseException:
                with contextlib.suppress(Exception):
                    imap.shutdown()
                raise
        return imap

    def append(
        self,
        user: str,
        password: str,
        mailbox: str,
        message: bytes,
        flags: str = "",
        date: str | None = None,
    ) -> None:
        """APPEND *message* to *mailbox* (created if missing) as *user*. *flags* are IMAP flags
        separated by spaces; *date* is an IMAP date-time such as ``"04-Mar-2024 09:30:00
        +0100"`` (the INTERNALDATE; default now)."""
        imap = self.connect(user, password)
        try:
            ensure_mailbox(imap, mailbox)
            typ, data = imap.append(
                mailbox_arg(mailbox),
                flags or None,
                _date_arg(date),
                message,
            )
            if typ != "OK":
                raise DovecotError(f"APPEND to {mailbox!r} failed: {data!r}")
        finally:
            with contextlib.suppress(Exception):
                imap.logout()


@dataclass(frozen=True)
class _Identities:
    internal_user: str  # auth (reads the passwd-file), anvil, stats
    internal_group: str
    login_user: str  # imap-login
    mail_uid: int  # imap (the mail processes)
    mail_gid: int
    chroot: bool  # mail processes chroot into mail_dir


def _identities() -> _Identities:
    """Which users the Dovecot processes run as.

    As a normal user, everything runs as that user (Dovecot cannot switch users anyway).
    As root, Dovecot refuses two things: imap-login as root ("This process must not be run as
    root") and mail processes as uid 0 ("Mail access not allowed for root", whatever
    first_valid_uid says). So imap-login runs as Debian's ``dovenull`` (or ``nobody``) and mail
    processes as ``nobody``, chrooted into mail_dir; auth stays root so that it can read the
    passwd-file below a root-only directory.
    """
    uid, gid = os.getuid(), os.getgid()
    name = pwd.getpwuid(uid).pw_name
    group = grp.getgrgid(gid).gr_name
    if uid != 0:
        return _Identities(name, group, name, uid, gid, chroot=False)
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        raise DovecotError("running Dovecot as root needs a 'nobody' user") from None
    login = "dovenull"
    try:
        pwd.getpwnam(login)
    except KeyError:
        login = "nobody"
    return _Identities(name, group, login, nobody.pw_uid, nobody.pw_gid, chroot=True)


def mailbox_arg(name: str) -> str:
    """*name* as an imaplib argument: modified UTF-7, quoted."""
    return _quote(imap_utf7_encode(name))


def ensure_mailbox(imap: imaplib.IMAP4, name: str) -> None:
    """CREATE *name* unless it exists (INBOX always does)."""
    if name.upper() == "INBOX":
        return
    typ, data = imap.list('""', mailbox_arg(name))
    if typ == "OK" and any(item is not None for item in data):
        return
    typ, data = imap.create(mailbox_arg(name))
    if typ != "OK" and b"ALREADYEXISTS" not in b" ".join(d for d in data if isinstance(d, bytes)):
        raise DovecotError(f"CREATE {name!r} failed: {data!r}")


def _date_arg(date: str | None) -> str | None:
    if date is None:
        return None
    return date if date.startswith('"') else f'"{date}"'
