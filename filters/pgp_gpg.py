"""The PGP filter's gpg runner: python-gnupg driving the real gpg binary, with a timeout and
an output cap on every run, one lock per GnuPG home, and no passphrase prompts.

One lock per home because every gpg call of a home talks to that home's gpg-agent, and
concurrent calls there contend (and, with loopback pinentry, can interleave passphrase
requests). Plaintext only ever passes through pipes: nothing here writes it to disk or logs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
from typing import Any

import gnupg  # type: ignore[import-untyped]

from .pgp_status import Decryption, Signature, Status

# python-gnupg logs the first bytes of the data it verifies at DEBUG level: keep that (possibly
# decrypted plaintext) out of the logs whatever the application's log level.
logging.getLogger("gnupg").setLevel(logging.INFO)

# Never prompt, never reach the network for keys.
_OPTIONS = ["--pinentry-mode", "loopback", "--no-auto-key-retrieve", "--disable-dirmngr"]


class GpgTimeout(Exception):
    """gpg did not finish in time and was killed."""


class GpgOutputTooLarge(Exception):
    """gpg's output went over the cap and gpg was killed."""


class _Bounds:
    """Kills one gpg process group when it runs past its time or writes more than its cap (a
    compressed "bomb" decrypts to gigabytes)."""

    def __init__(self, process: subprocess.Popen[bytes], seconds: float, max_output: int):
        self.process = process
        self.expired = False
        self.overflowed = False
        self._left = max_output
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.expired = True
        self._kill()

    def count(self, chunk: bytes) -> bool:
        """python-gnupg's on_data hook: False drops the chunk (nothing is kept past the cap)."""
        self._left -= len(chunk)
        if self._left < 0 and not self.overflowed:
            self.overflowed = True
            self._kill()
        return not self.overflowed

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def cancel(self) -> None:
        self._timer.cancel()


class _BoundedGPG(gnupg.GPG):  # type: ignore[misc]
    """python-gnupg's GPG with a deadline and an output cap on every gpg process it starts."""

    def __init__(self, timeout: float, max_output: int, **kwargs: Any) -> None:
        self.timeout = timeout
        self.max_output = max_output
        self._bounds: dict[int, _Bounds] = {}
        super().__init__(**kwargs)

    def _open_subprocess(self, args: list[str], passphrase: bool = False) -> Any:
        # As python-gnupg's, but in a process group of its own, so a kill also reaches
        # whatever gpg started that still holds its pipes.
        process = subprocess.Popen(
            self.make_args(args, passphrase), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=self.env, start_new_session=True,
        )
        self._bounds[process.pid] = _Bounds(process, self.timeout, self.max_output)
        return process

    def _collect_output(self, process: Any, result: Any, *args: Any, **kwargs: Any) -> Any:
        bounds = self._bounds.pop(process.pid)
        self.on_data = bounds.count  # read by the base class when it starts its reader
        try:
            return super()._collect_output(process, result, *args, **kwargs)
        finally:
            bounds.cancel()
            if bounds.expired:
                raise GpgTimeout(f"gpg took longer than {self.timeout:g} s")
            if bounds.overflowed:
                raise GpgOutputTooLarge(f"the output is over {self.max_output >> 20} MB")


def _checked(result: Any) -> tuple[Signature, ...]:
    """The signatures of a verify run; an unreadable signature is one "invalid" signature."""
    return Status.parse(result.stderr or "").signatures() or (Signature("invalid", ""),)


_home_locks: dict[str, threading.Lock] = {}
_home_locks_guard = threading.Lock()


def home_lock(home: str) -> threading.Lock:
    """The one lock of a GnuPG home, shared by every filter instance of the process."""
    key = os.path.realpath(home)
    with _home_locks_guard:
        return _home_locks.setdefault(key, threading.Lock())


class Gpg:
    """gpg on one GnuPG home: decrypt, verify, encrypt. Not-decryptable input is a result,
    not an exception; a timeout raises GpgTimeout."""

    def __init__(self, home: str, binary: str, passphrase: str | None, timeout: float,
                 max_output: int) -> None:
        self.home = home
        self._lock = home_lock(home)
        self._passphrase = passphrase
        with self._lock:
            self._gpg = _BoundedGPG(timeout, max_output, gpgbinary=binary, gnupghome=home,
                                    options=_OPTIONS)

    def decrypt(self, data: bytes) -> Decryption:
        try:
            with self._lock:
                result = self._gpg.decrypt(data, passphrase=self._passphrase)
        except GpgOutputTooLarge as exc:
            return Decryption(False, reason=f"too large to decrypt: {exc}")
        status = Status.parse(result.stderr or "")
        recipients = tuple("0x" + value.split()[0] for value in status.values("ENC_TO"))
        # Not the exit code: gpg exits 2 for a good decryption whose signer key is unknown.
        if not status.has("DECRYPTION_OKAY"):
            missing = [value.split()[0] for value in status.values("NO_SECKEY")]
            if missing and len(missing) == len(recipients):
                reason = "no secret key for " + ", ".join("0x" + key for key in missing)
            elif status.has("NEED_PASSPHRASE") and self._passphrase is None:
                reason = "the secret key needs a passphrase and no passphrase_file is set"
            elif not recipients and not status.has("BEGIN_DECRYPTION"):
                reason = "not valid OpenPGP data (" + status.reason() + ")"
            else:
                reason = status.reason()
            return Decryption(False, recipients=recipients, reason=reason)
        key = ""
        for value in status.values("DECRYPTION_KEY"):
            parts = value.split()
            key = "0x" + (parts[1] if len(parts) > 1 else parts[0])
        if not key and recipients:  # a gpg without DECRYPTION_KEY: the key id it used
            unusable = {"0x" + value.split()[0] for value in status.values("NO_SECKEY")}
            key = next((r for r in recipients if r not in unusable), recipients[0])
        data_out: bytes = result.data
        return Decryption(True, data_out, key, recipients, signatures=status.signatures())

    def verify_detached(self, data: bytes, signature: bytes) -> tuple[Signature, ...]:
        """Check ``signature`` over ``data``. The signature goes through a private temporary
        file (gpg reads detached signatures from a file); the data, maybe decrypted
        plaintext, only through a pipe."""
        with tempfile.NamedTemporaryFile(prefix="imapproxy-sig-", suffix=".asc") as sig_file:
            sig_file.write(signature)
            sig_file.flush()
            with self._lock:
                result = self._gpg.verify_data(sig_file.name, data)
        return _checked(result)

    def verify_inline(self, data: bytes) -> tuple[Signature, ...]:
        """Check a cleartext-signed (``BEGIN PGP SIGNED MESSAGE``) block."""
        with self._lock:
            result = self._gpg.verify(data)
        return _checked(result)

    def encrypt(self, data: bytes, recipient: str) -> bytes:
        """``data`` encrypted (armored) to ``recipient``; ValueError with gpg's reason."""
        with self._lock:
            result = self._gpg.encrypt(data, [recipient], always_trust=True, armor=True)
        if not result.ok:
            status = Status.parse(result.stderr or "")
            raise ValueError(f"cannot encrypt to {recipient!r}: {status.reason()}")
        armored: bytes = result.data
        return armored
