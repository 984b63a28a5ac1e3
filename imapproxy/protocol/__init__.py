"""Sans-I/O IMAP codec: framing, tokens, commands and responses. No sockets here."""
