"""The names of the client fixups and server quirks a config may select (docs/filters.md).

Kept apart from their implementations so the config loader can check names without
importing the server."""

from __future__ import annotations

# Client fixups: [[listener]] fixups = [...] and [[filter_rule]] fixups = [...].
CLIENT_FIXUPS = frozenset({
    "delay-newmail",         # EXISTS/RECENT only in answers to NOOP and CHECK
    "tb-extra-mailbox-sep",  # a trailing hierarchy separator in a mailbox name is dropped
    "tb-lsub-flags",         # LSUB answers carry \Noselect for mailboxes that cannot be selected
    "netscape-eoh",          # an empty HEADER.FIELDS answer is the end-of-header line
    "uid-first",             # UID is the first item of every FETCH response
})

# Server quirks: [upstream] quirks = [...].
SERVER_QUIRKS = frozenset({
    "rfc822-size-from-bytes",  # RFC822.SIZE always computed from the message bytes
    "no-uidplus",              # UIDPLUS is never used nor offered (UID EXPUNGE refused)
    "fetch-without-uid",       # FETCH responses without UID: the UID is found by sequence
})
