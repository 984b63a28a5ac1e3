"""The contract between the proxy and a message filter.

A message filter turns the upstream's message bytes into the bytes a client sees (or leaves
them alone). Everything a client can ask about a message (RFC822.SIZE, BODYSTRUCTURE,
ENVELOPE, sections, BINARY, SEARCH) is then computed from the filtered bytes, so filters only
ever deal with whole messages, never with protocol items.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class FilterError(Exception):
    """A filter could not process one message: it is served unfiltered and the error logged."""


@dataclass(frozen=True)
class FilterContext:
    """Who the message is for; filters that hold per-user material (PGP keys) need it."""

    user: str
    mailbox: str = ""  # as on the wire: modified UTF-7 for non-ASCII names (RFC 3501 5.1.3)
    uid: int = 0
    client_id: Mapping[str, str] = field(default_factory=dict)  # the client's ID fields


@runtime_checkable
class MessageFilter(Protocol):
    """One step of the chain.

    ``name`` and ``version`` and ``fingerprint()`` together identify the output: the proxy
    keys cached filtered bytes on them, so a new version or setting never serves stale output.
    ``apply`` must be a pure function of (raw, settings, context.user): the same input gives
    the same output. It returns ``None`` when the message is left alone (the cheap, common
    answer), or the new message bytes (CRLF line ends). It may raise ``FilterError`` (or any
    exception): the proxy then serves the message as it was before this filter and logs why.
    ``cache_output`` False means the output must never be written to disk (decrypted
    plaintext): the proxy keeps it in memory only.
    One instance serves every session, and ``apply`` runs in worker threads (off the event
    loop), possibly several at once: it must be thread-safe.
    """

    name: str
    version: str
    cache_output: bool

    def fingerprint(self) -> str:
        """A stable digest of the settings that change the output."""
        ...

    def apply(self, raw: bytes, context: FilterContext) -> bytes | None:
        """The filtered message, or None when this message is left unchanged."""
        ...


@runtime_checkable
class AppendFilter(Protocol):
    """A message filter that also rewrites messages a client APPENDs (e.g. encrypting them
    to the user's key before they reach the upstream). ``context.mailbox`` is the target
    mailbox; None leaves the message as it is. The proxy answers the APPEND only after the
    upstream stored what this returned."""

    def apply_append(self, raw: bytes, context: FilterContext) -> bytes | None:
        ...


# What the ``imapproxy.filters`` entry-point group names: a callable that takes the filter's
# TOML table (``[filters.NAME]``, {} when absent) and returns the configured filter. It raises
# ValueError with a readable message for a bad setting (the config loader reports it).
FilterFactory = Callable[[Mapping[str, Any]], MessageFilter]
