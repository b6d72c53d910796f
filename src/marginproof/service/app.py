"""``create_app(container) -> FastAPI``: routers, error handlers, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from marginproof.bootstrap import Container
from marginproof.service import errors
from marginproof.service.guard import RequestGuard
from marginproof.service.routes import (
    accounts,
    feedback,
    hedge,
    keys,
    parameters,
    stream,
    system,
    whatif,
)
from marginproof.service.routes import forecast as forecast_routes
from marginproof.service.stream import Fanout
from marginproof.web.router import router as web_router

DESCRIPTION = """Real-time margin service of marginproof.

Inputs (accounts, fills, transfers, market data, parameter changes) go to a durable,
append-only input log; the incremental engine re-margins the affected accounts and publishes
margin updates, margin calls and liquidation signals. Authenticate with `X-API-Key`:
account keys see only their account; operator keys manage accounts, inputs, parameters
and keys. `/health`, `/metrics` and this schema are public.
"""


def create_app(container: Container, manage_lifecycle: bool = True,
               start_engines: bool = True, start_feeds: bool = True) -> FastAPI:
    """The ASGI app over ``container``; ``manage_lifecycle`` starts/stops it with the app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await container.start(engines=start_engines, feeds=start_feeds)
        fanout = Fanout(container.repo, container.settings.bus_prefix,
                        container.settings.partitions)
        app.state.fanout = fanout
        if container.bus is not None:
            await fanout.start(container.bus)
        from marginproof.service.forecasting import MarginWarnings

        app.state.margin_warnings = MarginWarnings(container)
        if manage_lifecycle and start_engines:
            await app.state.margin_warnings.start()
        try:
            yield
        finally:
            await app.state.margin_warnings.stop()
            hedge.shutdown(app)
            await fanout.stop()
            if manage_lifecycle:
                await container.stop()

    app = FastAPI(title="marginproof", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.container = container
    s = container.settings
    app.add_middleware(RequestGuard, container=container, limiter=container.limiter,
                       max_body_bytes=s.max_body_bytes)
    errors.install(app)
    for r in (system.router, accounts.router, forecast_routes.router, parameters.router,
              hedge.router, whatif.router, keys.router, stream.router, feedback.router,
              web_router):
        app.include_router(r)
    return app
