"""Request guard: what every request passes before any route sees it (pure ASGI middleware).

In order, before the body is read or a route runs:

1. a URL with a NUL or another control character is refused (400; WebSocket: closed);
2. a body larger than ``max_body_bytes`` is refused (413) -- from ``Content-Length`` at once,
   and while reading for chunked bodies, so nothing large is ever buffered;
3. a request with a body (POST/PUT/PATCH) needs a valid API key *before* its body is read
   (401); the principal is kept for the route's own dependency (one key lookup);
4. a key over its rate limit gets 429 with ``Retry-After`` (per key, every route);
5. a JSON body is decoded strictly (:func:`marginproof.io.formats.loads_strict`: duplicate keys,
   ``NaN``/``Infinity``/``1e400``, over-long integers and nesting deeper than 32 are refused
   with 422 naming ``body``); the route then parses the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from marginproof.errors import InputError
from marginproof.io.formats import loads_strict
from marginproof.service.auth import authenticate
from marginproof.service.ratelimit import RateLimiter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _bad_url(scope: Scope) -> bool:
    raw = scope.get("raw_path") or b""
    qs = scope.get("query_string") or b""
    low = raw.lower() + b"?" + qs.lower()
    if b"\x00" in low or b"%00" in low:
        return True
    return any(ord(c) < 32 or c == "\x7f" for c in scope.get("path", ""))


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return bytes(v).decode("latin-1")
    return None


async def respond(send: Send, status: int, detail: Any,
                  headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """A JSON error response (``{"detail": ...}``)."""
    raw = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(raw)).encode()), *headers]})
    await send({"type": "http.response.body", "body": raw})


class RequestGuard:
    """ASGI middleware (see module docstring). ``container`` gives the repository and metrics."""

    def __init__(self, app: ASGIApp, container: Any, limiter: RateLimiter,
                 max_body_bytes: int) -> None:
        self.app = app
        self.container = container
        self.limiter = limiter
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if _bad_url(scope):
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 4400,
                            "reason": "control character in URL"})
                return
            await respond(send, 400, "control character in URL")
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        has_body = method in BODY_METHODS
        cl = _header(scope, b"content-length")
        if cl is not None:
            if not cl.strip().isdigit():
                await respond(send, 400, "bad Content-Length")
                return
            if int(cl) > self.max_body:
                await respond(send, 413, f"body larger than {self.max_body} bytes")
                return
            has_body = has_body or int(cl) > 0
        key = _header(scope, b"x-api-key")
        principal = None
        metrics = self.container.metrics
        if key is not None or has_body:
            principal, reason = authenticate(self.container.repo, key)
            state = scope.setdefault("state", {})
            state["principal"], state["auth_reason"] = principal, reason
            if principal is None and has_body:
                metrics.auth_failures.labels(reason).inc()
                await respond(send, 401, f"API key {reason}",
                              ((b"www-authenticate", b"ApiKey"),))
                return
        if principal is not None:
            wait = self.limiter.take(principal.key_id)
            if wait > 0:
                metrics.auth_failures.labels("rate_limited").inc()
                await respond(send, 429, "rate limit of this key exceeded",
                              ((b"retry-after", RateLimiter.retry_after(wait).encode()),))
                return
        if not has_body:
            await self.app(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            more = bool(msg.get("more_body", False))
            if len(body) > self.max_body:
                await respond(send, 413, f"body larger than {self.max_body} bytes")
                return
        ctype = (_header(scope, b"content-type") or "").lower()
        if body and ("json" in ctype or not ctype):
            try:
                loads_strict(bytes(body), "body")
            except InputError as exc:
                await respond(send, 422, [{"loc": ["body"], "msg": exc.message,
                                           "type": "json_invalid"}])
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
