"""WebSocket stream of one account's margin updates and events."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from marginproof.service.auth import authenticate
from marginproof.service.sessions import (
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHENTICATED,
    refuse,
    sessions_of,
    watch_key,
)

router = APIRouter(tags=["stream"])


@router.websocket("/accounts/{account_id}/stream")
async def account_stream(websocket: WebSocket, account_id: str) -> None:
    """Push ``{"type": "margin", ...}`` on every re-margin and account events as they occur.

    Authenticate with the ``X-API-Key`` header or an ``api_key`` query parameter. Refusals
    are close codes (after the handshake): 4401 bad, missing or revoked key -- also when the
    key is revoked while the stream is open -- and 4403 another account's key.
    """
    container = websocket.app.state.container
    key = websocket.headers.get("x-api-key") or websocket.query_params.get("api_key")
    principal, reason = await asyncio.to_thread(authenticate, container.repo, key)
    if principal is None or key is None:
        container.metrics.auth_failures.labels(reason).inc()
        await refuse(websocket, CLOSE_UNAUTHENTICATED, f"API key {reason}")
        return
    if not principal.can_see(account_id):
        container.metrics.auth_failures.labels("account").inc()
        await refuse(websocket, CLOSE_FORBIDDEN, "not your account")
        return
    await websocket.accept()
    sessions = sessions_of(websocket.app)
    sessions.add(principal.key_id, websocket)
    watcher = asyncio.ensure_future(watch_key(websocket, container, key,
                                              container.settings.ws_recheck_s))
    fanout = websocket.app.state.fanout
    q = fanout.subscribe(account_id)
    try:
        latest = await asyncio.to_thread(container.repo.latest_margin, account_id)
        if latest is not None:
            await websocket.send_json({"type": "margin", **latest})
        while True:
            get = asyncio.ensure_future(q.get())
            recv = asyncio.ensure_future(websocket.receive_text())
            done, _ = await asyncio.wait({get, recv, watcher},
                                         return_when=asyncio.FIRST_COMPLETED)
            if watcher in done:  # the key was revoked: the socket is closed
                get.cancel()
                recv.cancel()
                return
            if recv in done:
                get.cancel()
                recv.result()  # raises on disconnect; client messages are ignored
                continue
            recv.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await recv
            await websocket.send_json(get.result())
    except (WebSocketDisconnect, RuntimeError):  # closed by the client, or by a revocation
        pass
    finally:
        watcher.cancel()
        sessions.remove(principal.key_id, websocket)
        fanout.unsubscribe(account_id, q)
