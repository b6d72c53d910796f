"""Live WebSocket sessions per API key: revoking a key closes its streams at once.

Every stream (the account stream and the console stream) registers here with the key it
authenticated with. ``DELETE /keys/{id}`` closes that key's sessions in this process with code
4401; each session also re-checks its key every ``ws_recheck_s`` seconds, which covers a key
revoked by another service process sharing the database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from marginproof.service.auth import authenticate

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


async def refuse(websocket: WebSocket, code: int, reason: str,
                 subprotocol: str | None = None) -> None:
    """Refuse a stream with a documented close code: accepted then closed, so the client sees
    the code (a close before the handshake would only be an HTTP 403)."""
    await websocket.accept(subprotocol=subprotocol)
    await websocket.close(code=code, reason=reason)


class Sessions:
    """Open WebSockets by key id (in this process)."""

    def __init__(self) -> None:
        self._by_key: dict[str, set[WebSocket]] = defaultdict(set)

    def add(self, key_id: str, ws: WebSocket) -> None:
        self._by_key[key_id].add(ws)

    def remove(self, key_id: str, ws: WebSocket) -> None:
        s = self._by_key.get(key_id)
        if s is not None:
            s.discard(ws)
            if not s:
                del self._by_key[key_id]

    def count(self, key_id: str | None = None) -> int:
        if key_id is not None:
            return len(self._by_key.get(key_id, ()))
        return sum(len(s) for s in self._by_key.values())

    async def revoke(self, key_id: str) -> int:
        """Close every stream of ``key_id`` with 4401; returns how many."""
        socks = list(self._by_key.pop(key_id, ()))
        for ws in socks:
            await close_quietly(ws, CLOSE_UNAUTHENTICATED, "API key revoked")
        return len(socks)


async def close_quietly(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state is WebSocketState.CONNECTED and \
            ws.client_state is WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await ws.close(code=code, reason=reason)


def sessions_of(app: Any) -> Sessions:
    s = getattr(app.state, "ws_sessions", None)
    if s is None:
        s = Sessions()
        app.state.ws_sessions = s
    return s


async def watch_key(ws: WebSocket, container: Any, key: str, interval_s: float) -> None:
    """Close ``ws`` with 4401 once its key stops authenticating (revoked elsewhere)."""
    while True:
        await asyncio.sleep(interval_s)
        principal, _ = await asyncio.to_thread(authenticate, container.repo, key)
        if principal is None:
            await close_quietly(ws, CLOSE_UNAUTHENTICATED, "API key revoked")
            return
