"""The local message store and per-mailbox index (see docs/cache.md).

Sans-network: the proxy decides what to fetch; this package keeps what it fetched, keyed by
(upstream, user, mailbox, UIDVALIDITY, UID), in a diskcache directory per user.
"""

from imapproxy.cache.entry import MessageStream
from imapproxy.cache.index import IndexEntry, MailboxIndex
from imapproxy.cache.store import (
    CacheIsolationError,
    CacheStats,
    MailboxCache,
    MessageCache,
    UserCache,
    UserStats,
    mailbox_key,
    upstream_id,
    user_cache_id,
)

__all__ = [
    "CacheIsolationError",
    "CacheStats",
    "IndexEntry",
    "MailboxCache",
    "MailboxIndex",
    "MessageCache",
    "MessageStream",
    "UserCache",
    "UserStats",
    "mailbox_key",
    "upstream_id",
    "user_cache_id",
]
