"""imapproxy: a caching and filtering IMAP proxy."""

__version__ = "0.1.0"
