"""WebSocket stream of one account's margin updates and events."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from marginproof.service.auth import authenticate

router = APIRouter(tags=["stream"])


@router.websocket("/accounts/{account_id}/stream")
async def account_stream(websocket: WebSocket, account_id: str) -> None:
    """Push ``{"type": "margin", ...}`` on every re-margin and account events as they occur.

    Authenticate with the ``X-API-Key`` header or an ``api_key`` query parameter. Close codes:
    4401 bad/missing/revoked key, 4403 another account's key.
    """
    container = websocket.app.state.container
    key = websocket.headers.get("x-api-key") or websocket.query_params.get("api_key")
    principal, reason = await asyncio.to_thread(authenticate, container.repo, key)
    if principal is None:
        container.metrics.auth_failures.labels(reason).inc()
        await websocket.close(code=4401, reason=f"API key {reason}")
        return
    if not principal.can_see(account_id):
        container.metrics.auth_failures.labels("account").inc()
        await websocket.close(code=4403, reason="not your account")
        return
    await websocket.accept()
    fanout = websocket.app.state.fanout
    q = fanout.subscribe(account_id)
    latest = await asyncio.to_thread(container.repo.latest_margin, account_id)
    try:
        if latest is not None:
            await websocket.send_json({"type": "margin", **latest})
        while True:
            get = asyncio.ensure_future(q.get())
            recv = asyncio.ensure_future(websocket.receive_text())
            done, _ = await asyncio.wait({get, recv}, return_when=asyncio.FIRST_COMPLETED)
            if recv in done:
                get.cancel()
                recv.result()  # raises on disconnect; client messages are ignored
                continue
            recv.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recv
            await websocket.send_json(get.result())
    except WebSocketDisconnect:
        pass
    finally:
        fanout.unsubscribe(account_id, q)
