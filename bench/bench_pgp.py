"""PGP filter benchmark: decryption and verification throughput with the real gpg.

    python bench/bench_pgp.py                     # 200 x ~20 KB, 3 x 1 MB, 50 signed (~30 s)
    python bench/bench_pgp.py --messages 50 --big 1 --signed 10

What runs (in a fresh GnuPG home under /tmp, removed at the end): one ed25519/cv25519 key
without passphrase; ``--messages`` PGP/MIME messages of ~20 KB (a text part and a base64
attachment inside the encrypted entity) and ``--big`` of ~1 MB, encrypted to that key;
``--signed`` multipart/signed messages of ~20 KB. Each is then run once through
``PgpFilter.apply`` in this process, one after another (the filter serialises a home's gpg
runs anyway), and every output is checked to hold the plaintext. Also timed: the cheap test
that lets a 20 KB non-PGP message through without gpg.

Figures: messages/s and MB/s of input (the encrypted bytes the proxy reads from upstream).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from filters.pgp import make_filter
from imapproxy.filtering.api import FilterContext

USER = "bench"
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi"]


def gpg(home: Path, *args: str, data: bytes = b"") -> bytes:
    done = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode",
                           "loopback", "--passphrase", "", *args],
                          input=data, capture_output=True, timeout=120, check=True)
    return done.stdout


def make_key(home: Path) -> str:
    home.mkdir(mode=0o700)
    gpg(home, "--quick-gen-key", "Bench <bench@example.org>", "ed25519", "sign,cert", "never")
    listing = gpg(home, "--with-colons", "--list-keys").decode()
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    gpg(home, "--quick-add-key", fpr, "cv25519", "encr", "never")
    return fpr


def text(rng: random.Random, size: int) -> bytes:
    words: list[str] = []
    length = 0
    while length < size:
        line = " ".join(rng.choice(WORDS) for _ in range(10))
        words.append(line)
        length += len(line) + 2
    return ("\r\n".join(words) + "\r\n").encode()


def entity(rng: random.Random, size: int, marker: str) -> bytes:
    """A multipart/mixed entity: a text part (with ``marker``) and a base64 attachment."""
    attachment = base64.encodebytes(rng.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (b'Content-Type: multipart/mixed; boundary="inner"\r\n\r\n--inner\r\n'
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + marker.encode() + b"\r\n"
            + text(rng, size // 4) + b"--inner\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + b"--inner--\r\n")


def header(subject: str) -> bytes:
    return (b"From: Bench <bench@example.org>\r\nTo: Bench <bench@example.org>\r\n"
            b"Subject: " + subject.encode() + b"\r\nDate: Mon, 30 Nov 2026 12:00:00 +0000\r\n"
            b"MIME-Version: 1.0\r\n")


def encrypted_message(home: Path, fpr: str, inner: bytes, subject: str) -> bytes:
    armored = gpg(home, "--armor", "--trust-model", "always", "-r", fpr, "--encrypt", data=inner)
    return (header(subject)
            + b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; '
            b'boundary="outer"\r\n\r\n--outer\r\nContent-Type: application/pgp-encrypted\r\n\r\n'
            b"Version: 1\r\n\r\n--outer\r\nContent-Type: application/octet-stream\r\n\r\n"
            + armored.replace(b"\n", b"\r\n") + b"\r\n--outer--\r\n")


def signed_message(home: Path, inner: bytes, subject: str) -> bytes:
    signature = gpg(home, "--armor", "--detach-sign", data=inner)
    return (header(subject)
            + b'Content-Type: multipart/signed; protocol="application/pgp-signature"; '
            b'micalg=pgp-sha512; boundary="outer"\r\n\r\n--outer\r\n' + inner
            + b"\r\n--outer\r\nContent-Type: application/pgp-signature\r\n\r\n"
            + signature.replace(b"\n", b"\r\n") + b"\r\n--outer--\r\n")


def run(root: Path, name: str, messages: list[tuple[bytes, str]], check: str
        ) -> dict[str, float]:
    pgp = make_filter({"gnupg_home": str(root / "%u")})
    context = FilterContext(user=USER)
    pgp.apply(messages[0][0], context)  # start gpg-agent outside the timing
    started = time.perf_counter()
    for raw, marker in messages:
        out = pgp.apply(raw, context)
        assert out is not None and marker.encode() in out and check.encode() in out, name
    seconds = time.perf_counter() - started
    size = sum(len(raw) for raw, _ in messages)
    figures = {"messages": len(messages), "mean_kb": size / len(messages) / 1024,
               "seconds": seconds, "messages_per_s": len(messages) / seconds,
               "mb_per_s": size / seconds / 1e6}
    print(f"{name:<22} {len(messages):>4} x {figures['mean_kb']:>7.1f} KB  "
          f"{figures['messages_per_s']:>7.1f} msg/s  {figures['mb_per_s']:>6.2f} MB/s")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--big", type=int, default=3)
    parser.add_argument("--signed", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not 1 <= args.messages <= 2000 or not 0 <= args.big <= 20 or not 0 <= args.signed <= 2000:
        parser.error("keep the run bounded: --messages 1..2000, --big 0..20, --signed 0..2000")
    root = Path(tempfile.mkdtemp(prefix="bench-pgp-"))
    home = root / USER
    try:
        fpr = make_key(home)
        rng = random.Random(4)
        print(f"gpg {gpg(home, '--version').split()[2].decode()}, making messages ...")
        small = [(encrypted_message(home, fpr, entity(rng, 20_000, f"m{n}"), f"m{n}"), f"m{n}")
                 for n in range(args.messages)]
        big = [(encrypted_message(home, fpr, entity(rng, 1_000_000, f"b{n}"), f"b{n}"), f"b{n}")
               for n in range(args.big)]
        signed = [(signed_message(home, entity(rng, 20_000, f"s{n}"), f"s{n}"), f"s{n}")
                  for n in range(args.signed)]
        results = {"decrypt_20kb": run(root, "decrypt ~20 KB", small, "decrypted with key")}
        if big:
            results["decrypt_1mb"] = run(root, "decrypt ~1 MB", big, "decrypted with key")
        if signed:
            results["verify_20kb"] = run(root, "verify ~20 KB", signed, "signature good")
        plain = header("plain") + b"Content-Type: text/plain\r\n\r\n" + text(rng, 20_000)
        pgp = make_filter({"gnupg_home": str(root / "%u")})
        started = time.perf_counter()
        for _ in range(1000):
            assert pgp.apply(plain, FilterContext(user=USER)) is None
        per_message = (time.perf_counter() - started) / 1000
        print(f"non-PGP 20 KB message: {per_message * 1e6:.1f} us (no gpg run)")
        results["plain_20kb_us"] = {"microseconds": per_message * 1e6}
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                       capture_output=True, timeout=30, check=False)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
