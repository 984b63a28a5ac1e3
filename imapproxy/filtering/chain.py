"""The ordered filters of one session, run so that one failing filter costs one message its
filtering, never the session.

A chain's ``identity`` names its output: a digest of every filter's name, version and
settings fingerprint, in order. Cached filtered bytes are keyed by it, so a new filter
version or setting is a new key and old output is never served.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence

from .api import AppendFilter, FilterContext, FilterError, MessageFilter

log = logging.getLogger(__name__)

Observer = Callable[[str, bool], None]  # (filter name, ran without failing): metrics


class FilterChain:
    def __init__(self, filters: Sequence[MessageFilter], observe: Observer | None = None
                 ) -> None:
        self.filters = tuple(filters)
        self.observe = observe or (lambda name, ok: None)
        digest = hashlib.sha256()
        for step in self.filters:
            for text in (step.name, step.version, step.fingerprint()):
                data = text.encode("utf-8")
                digest.update(len(data).to_bytes(4, "big") + data)
        self.identity = digest.hexdigest()[:32]

    def __bool__(self) -> bool:
        return bool(self.filters)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.filters)

    @property
    def cache_output(self) -> bool:
        """False when any step's output must stay off the disk (decrypted plaintext)."""
        return all(step.cache_output for step in self.filters)

    @property
    def appends(self) -> bool:
        return any(isinstance(step, AppendFilter) for step in self.filters)

    def apply(self, raw: bytes, context: FilterContext) -> bytes:
        """The message as the client sees it. A step that fails is skipped for this
        message: the next one gets what the failing step was given."""
        data = raw
        for step in self.filters:
            ok, out = _run(step, "apply", data, context)
            self.observe(step.name, ok)
            if out is not None:
                data = out
        return data

    def apply_append(self, raw: bytes, context: FilterContext) -> bytes:
        """An APPENDed message as it goes upstream (e.g. encrypted to the user's key).

        Unlike reading, a failing step raises FilterError: the APPEND is refused rather than
        the message stored in a form the filter was there to prevent (plaintext)."""
        data = raw
        for step in self.filters:
            if isinstance(step, AppendFilter):
                try:
                    out = step.apply_append(data, context)
                    self.observe(step.name, True)
                except Exception as exc:
                    self.observe(step.name, False)
                    log.warning("filter %s apply_append failed user=%s mailbox=%s: %s: %s",
                                step.name, context.user, context.mailbox,
                                type(exc).__name__, exc)
                    raise FilterError(f"{step.name}: {exc}") from exc
                if out is not None:
                    data = out
        return data


EMPTY = FilterChain(())


def _run(step: MessageFilter, method: str, data: bytes, context: FilterContext
         ) -> tuple[bool, bytes | None]:
    """(whether the step worked, its output or None)."""
    try:
        out = getattr(step, method)(data, context)
    except FilterError as exc:
        log.warning("filter %s %s failed user=%s mailbox=%s uid=%d: %s", step.name, method,
                    context.user, context.mailbox, context.uid, exc)
        return False, None
    except Exception as exc:  # noqa: BLE001 - a filter bug costs one message its filtering
        log.warning("filter %s %s crashed user=%s mailbox=%s uid=%d: %s: %s", step.name,
                    method, context.user, context.mailbox, context.uid,
                    type(exc).__name__, exc)
        return False, None
    if out is not None and not isinstance(out, bytes):
        log.warning("filter %s %s returned %s, not bytes: ignored", step.name, method,
                    type(out).__name__)
        return False, None
    return True, out
