"""Building answers for the client, and the one place where errors become BAD / NO / BYE."""

from __future__ import annotations

from ..errors import ImapError, SessionEnded


def status_line(tag: str | None, status: str, text: str, code: str | None = None) -> bytes:
    code_part = f"[{code}] " if code else ""
    return f"{tag or '*'} {status} {code_part}{text}\r\n".encode("utf-8", "replace")


def error_answer(tag: str | None, error: ImapError) -> bytes:
    """``tag BAD/NO [CODE] text``, or ``* BYE text`` for errors that end the session."""
    if isinstance(error, SessionEnded):
        return status_line(None, "BYE", error.text, error.code)
    return status_line(tag, error.status, error.text, error.code)
