"""Tiny filters for the tests: they change a message in ways every content item shows."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from imapproxy.filtering import FilterContext, FilterError, registry


class TagFilter:
    """Prefixes the Subject with ``[word]`` and appends a line ``filtered-word <word>``.
    A message containing ``fail_on`` makes it raise FilterError; ``crash_on`` a plain bug."""

    name = "tag"
    version = "1"
    cache_output = True

    def __init__(self, settings: Mapping[str, Any]) -> None:
        if "word" in settings and not isinstance(settings["word"], str):
            raise ValueError("word must be a string")
        self.word = str(settings.get("word", "FILTERED")).encode()
        self.fail_on = str(settings.get("fail_on", "")).encode()
        self.crash_on = str(settings.get("crash_on", "")).encode()
        self.only_if = str(settings.get("only_if", "")).encode()  # else: left alone
        self.calls = 0

    def fingerprint(self) -> str:
        return self.word.decode()

    def apply(self, raw: bytes, context: FilterContext) -> bytes | None:
        self.calls += 1
        if self.fail_on and self.fail_on in raw:
            raise FilterError("refused by the test")
        if self.crash_on and self.crash_on in raw:
            raise ZeroDivisionError("a bug in the filter")
        if self.only_if and self.only_if not in raw:
            return None
        return tag(raw, self.word)


def tag(raw: bytes, word: bytes) -> bytes:
    """What TagFilter makes of ``raw``."""
    header, sep, body = raw.partition(b"\r\n\r\n")
    header = re.sub(rb"(?im)^Subject: ?", b"Subject: [" + word + b"] ", header, count=1)
    return header + sep + body + b"\r\nfiltered-word " + word + b"\r\n"


class SecretFilter(TagFilter):
    """Like TagFilter, but its output must never reach the disk (like decrypted PGP)."""

    name = "secret"
    cache_output = False


class AppendMarker(TagFilter):
    """Also rewrites APPENDed messages: adds an ``X-Appended-Via`` header."""

    name = "append-marker"

    def apply(self, raw: bytes, context: FilterContext) -> bytes | None:
        return None

    def apply_append(self, raw: bytes, context: FilterContext) -> bytes | None:
        if self.fail_on and self.fail_on in raw:
            raise FilterError("cannot prepare this one")
        return b"X-Appended-Via: imapproxy " + context.mailbox.encode() + b"\r\n" + raw


SAMPLES = {"tag": TagFilter, "secret": SecretFilter, "append-marker": AppendMarker}


@contextmanager
def registered() -> Iterator[None]:
    """The sample filters, available by name for the duration."""
    for name, factory in SAMPLES.items():
        registry.register(name, factory)
    try:
        yield
    finally:
        for name in SAMPLES:
            registry.unregister(name)
