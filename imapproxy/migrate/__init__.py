"""``imapproxy migrate`` and ``imapproxy verify``: copy an IMAP account to a Maildir or another
IMAP server keeping UIDVALIDITY, UIDs, flags and INTERNALDATE, incrementally and resumably
(docs/migration.md)."""
