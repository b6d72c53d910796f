"""Error responses: bad input is 422 naming the field; nothing is changed on a rejection.

Validation errors never echo the offending input back (a ``NaN`` in a response body is not
JSON, and echoing input is how error pages leak data); a full lane is 429 with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from marginproof.errors import InputError, MarginproofError
from marginproof.service.workers import PoolBroken, Saturated


def _clean(err: Any) -> dict[str, Any]:
    """A pydantic error without its ``input`` and ``ctx`` (which may hold the bad value)."""
    loc = [x if isinstance(x, (str, int)) else str(x) for x in err.get("loc", ())]
    return {"loc": loc, "msg": str(err.get("msg", "invalid")), "type": str(err.get("type", ""))}


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": [_clean(e)
                                                                 for e in exc.errors()]})

    @app.exception_handler(InputError)
    async def _input(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse(status_code=422,
                            content={"detail": [{"loc": [exc.field], "msg": exc.message,
                                                 "type": "input_error"}]})

    @app.exception_handler(MarginproofError)
    async def _other(_: Request, exc: MarginproofError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(Saturated)
    async def _saturated(_: Request, exc: Saturated) -> JSONResponse:
        return JSONResponse(status_code=429, headers={"Retry-After": str(exc.retry_after_s)},
                            content={"detail": f"the {exc.lane} workers are busy: retry later"})

    @app.exception_handler(PoolBroken)
    async def _broken(_: Request, exc: PoolBroken) -> JSONResponse:
        return JSONResponse(status_code=503, headers={"Retry-After": "1"},
                            content={"detail": "a worker stopped while computing: retry"})
