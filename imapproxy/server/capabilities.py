"""What the proxy advertises. An allowlist: an upstream extension the proxy does not handle is
never passed on, however the upstream announces it (CAPABILITY response or response code)."""

from __future__ import annotations

# Extensions whose commands and responses the proxy relays correctly, offered when the
# upstream has them.
RELAYED = (
    "IDLE", "NAMESPACE", "ENABLE", "UNSELECT", "UIDPLUS", "MOVE", "SPECIAL-USE",
    "LIST-EXTENDED", "LIST-STATUS", "CHILDREN", "CONDSTORE", "QRESYNC",
    # FETCH BINARY is computed by the proxy; the upstream must take ~{n} literals in APPEND.
    "BINARY",
)
# Handled by the proxy itself, whatever the upstream says.
OWN = ("IMAP4rev1", "LITERAL+", "ID")
# What ENABLE may switch on (RFC 5161), among those advertised.
ENABLEABLE = frozenset({"CONDSTORE", "QRESYNC"})


def preauth_capabilities(*, starttls: bool, login_allowed: bool) -> list[str]:
    caps = [*OWN, "SASL-IR"]
    if starttls:
        caps.append("STARTTLS")
    if login_allowed:
        caps.append("AUTH=PLAIN")
    else:
        caps.append("LOGINDISABLED")
    return caps


def authenticated_capabilities(upstream: frozenset[str]) -> list[str]:
    return [*OWN, *(c for c in RELAYED if c in upstream)]
