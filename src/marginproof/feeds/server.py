"""A local websocket server that plays recorded venue frames (tests, demos; 127.0.0.1 only).

It answers a Deribit ``public/subscribe`` or a Binance ``SUBSCRIBE`` the way the venue does and
then sends, in order, the recorded frames of the subscribed channels, ``interval_s`` apart.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve


class RecordedVenueServer:
    """Serve ``frames`` (``(channel, frame)`` pairs) for ``venue`` (``deribit``/``binance``)."""

    def __init__(self, venue: str, frames: list[tuple[str, str]], interval_s: float = 0.0,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if venue not in ("deribit", "binance"):
            raise ValueError("venue must be deribit or binance")
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the recorded server only listens on loopback")
        self.venue = venue
        self.frames = frames
        self.interval_s = interval_s
        self.host = host
        self.port = port
        self.sent = 0
        self.done = asyncio.Event()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        path = "/ws/api/v2" if self.venue == "deribit" else "/ws"
        return f"ws://{self.host}:{self.port}{path}"

    async def _handler(self, ws: ServerConnection) -> None:
        req: Any = json.loads(await ws.recv())
        if self.venue == "deribit":
            channels = set(req.get("params", {}).get("channels", []))
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": req.get("id"),
                                      "result": sorted(channels)}))
        else:
            channels = set(req.get("params", []))
            await ws.send(json.dumps({"result": None, "id": req.get("id")}))
        for ch, frame in self.frames:
            if ch in channels or "*" in channels:
                await ws.send(frame)
                self.sent += 1
                if self.interval_s:
                    await asyncio.sleep(self.interval_s)
        self.done.set()
        await ws.wait_closed()

    async def start(self) -> RecordedVenueServer:
        self._server = await serve(self._handler, self.host, self.port)
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
