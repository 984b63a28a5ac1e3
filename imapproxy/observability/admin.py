"""The admin socket: ``imapproxy who`` and ``imapproxy kick USER`` talk to a running proxy.

A Unix socket (mode 0600, in a 0700 directory: only the proxy's own user may use it), one
JSON request line, one JSON answer line. The server side knows only :class:`SessionView`,
so it does not depend on the Session class.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

MAX_REQUEST = 4096
UNIX_PATH_MAX = 107


class SessionView(Protocol):
    user: str
    started_at: float

    def describe(self) -> dict[str, Any]: ...

    def shutdown(self, reason: str) -> None: ...


class AdminServer:
    def __init__(self, path: Path, sessions: Callable[[], Iterable[SessionView]],
                 forget_user: Callable[[str], int] = lambda user: 0) -> None:
        self.path = path
        self.sessions = sessions
        self.forget_user = forget_user  # closes the user's parked upstream connections
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> bool:
        """Listen; False (and a warning) when the path cannot be used."""
        if len(os.fsencode(self.path)) > UNIX_PATH_MAX:
            log.warning("admin socket path too long, admin socket off: %s", self.path)
            return False
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.path.is_socket():
                if _answers(self.path):
                    log.warning("another proxy answers on %s: admin socket off", self.path)
                    return False
                self.path.unlink()
            old = os.umask(0o177)
            try:
                self._server = await asyncio.start_unix_server(self._client, str(self.path))
            finally:
                os.umask(old)
            os.chmod(self.path, 0o600)
        except OSError as exc:
            log.warning("admin socket off: %s: %s", self.path, exc)
            return False
        return True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            answer = self.answer(line[:MAX_REQUEST])
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "request is not JSON"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "request is not a JSON object"}
        command = request.get("command")
        if command == "who":
            now = time.time()
            rows = []
            for session in self.sessions():
                row = session.describe()
                row["seconds"] = round(now - session.started_at, 1)
                rows.append(row)
            return {"ok": True, "sessions": rows}
        if command == "kick":
            user = request.get("user")
            if not isinstance(user, str) or not user:
                return {"ok": False, "error": "kick needs a user"}
            kicked = [s for s in self.sessions() if s.user == user]
            for session in kicked:
                session.shutdown("Disconnected by the administrator.")
            parked = self.forget_user(user)
            log.info("admin: kicked %d sessions of %s, closed %d parked upstream connections",
                     len(kicked), user, parked)
            return {"ok": True, "kicked": len(kicked), "parked_closed": parked}
        return {"ok": False, "error": f"unknown command {command!r}"}


def _answers(path: Path) -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(1.0)
        sock.connect(str(path))
        return True
    return False


def request(path: Path, payload: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """The client side (blocking): send one request, return the answer. OSError if no
    proxy listens there."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data)
    if not isinstance(answer, dict):
        raise TypeError("the proxy's answer is not a JSON object")
    return answer
