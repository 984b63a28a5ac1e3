"""Real gpg keys for the PGP filter tests, made once per session in temporary GnuPG homes.

- ``alice``: the gateway's user; her home (``<root>/alice``) holds her secret key and Bob's
  public key, as the filter's ``gnupg_home = "<root>/%u"`` expects.
- ``bob``: a correspondent whose signatures Alice can check; his home also has Alice's public
  key, so he writes the mail she receives.
- ``dave``: a user whose secret key has a passphrase (``PASSPHRASE``), in his own home.
- ``carol``: a stranger: Alice has none of her keys (unknown signer, mail Alice cannot read).

Keys are ed25519 + cv25519 without passphrase, so generating them takes milliseconds.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

GPG_TIMEOUT = 30.0
PASSPHRASE = "correct horse battery staple"


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    home: Path
    fingerprint: str  # primary key
    encryption_key_id: str  # long key id of the cv25519 subkey (what ENC_TO names)

    def gpg(self, *args: str, data: bytes = b"") -> bytes:
        """Run gpg on this person's home; its output."""
        return run_gpg(self.home, *args, data=data)

    def encrypt(self, data: bytes, to: Person, sign: bool = False) -> bytes:
        extra = ["--sign", "--local-user", self.fingerprint] if sign else []
        return self.gpg("--armor", "--trust-model", "always", "--recipient", to.fingerprint,
                        *extra, "--encrypt", data=data)

    def detach_sign(self, data: bytes) -> bytes:
        return self.gpg("--armor", "--local-user", self.fingerprint, "--detach-sign", data=data)

    def clearsign(self, data: bytes) -> bytes:
        return self.gpg("--local-user", self.fingerprint, "--clearsign", data=data)


@dataclass(frozen=True)
class Keys:
    root: Path  # gnupg_home = root / "%u"
    alice: Person
    bob: Person
    carol: Person
    dave: Person

    @property
    def gnupg_home(self) -> str:
        return str(self.root / "%u")


def run_gpg(home: Path, *args: str, data: bytes = b"", passphrase: str = "") -> bytes:
    done = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback",
         "--passphrase", passphrase, *args],
        input=data, capture_output=True, timeout=GPG_TIMEOUT, check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"gpg {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def make_person(root: Path, name: str, passphrase: str = "") -> Person:
    home = root / name.lower()
    home.mkdir(mode=0o700)
    email = f"{name.lower()}@example.org"
    run_gpg(home, "--quick-gen-key", f"{name} <{email}>", "ed25519", "sign,cert", "never",
            passphrase=passphrase)
    listing = run_gpg(home, "--with-colons", "--list-keys", email).decode()
    fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                       if line.startswith("fpr:"))
    run_gpg(home, "--quick-add-key", fingerprint, "cv25519", "encr", "never",
            passphrase=passphrase)
    listing = run_gpg(home, "--with-colons", "--list-keys", email).decode()
    subkey = next(line.split(":")[4] for line in listing.splitlines() if line.startswith("sub:"))
    return Person(name, email, home, fingerprint, subkey)


def exchange(owner: Person, other: Person) -> None:
    """Import ``other``'s public key into ``owner``'s home."""
    owner.gpg("--import", data=other.gpg("--armor", "--export", other.fingerprint))


@pytest.fixture(scope="session")
def pgp_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    root = tmp_path_factory.mktemp("gnupg")
    os.chmod(root, 0o700)
    keys = Keys(root, *(make_person(root, name) for name in ("Alice", "Bob", "Carol")),
                make_person(root, "Dave", PASSPHRASE))
    # The passphrase must come from the filter, not from gpg-agent's cache of the key setup.
    subprocess.run(["gpgconf", "--homedir", str(keys.dave.home), "--kill", "gpg-agent"],
                   capture_output=True, timeout=GPG_TIMEOUT, check=True)
    exchange(keys.alice, keys.bob)
    exchange(keys.bob, keys.alice)
    exchange(keys.bob, keys.carol)
    exchange(keys.carol, keys.alice)
    exchange(keys.bob, keys.dave)
    try:
        yield keys
    finally:
        for person in (keys.alice, keys.bob, keys.carol, keys.dave):
            subprocess.run(["gpgconf", "--homedir", str(person.home), "--kill", "all"],
                           capture_output=True, timeout=GPG_TIMEOUT, check=False)
