"""Error responses: bad input is 422 naming the field; nothing is changed on a rejection."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from marginproof.errors import InputError, MarginproofError


def install(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def _input(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse(status_code=422,
                            content={"detail": [{"loc": [exc.field], "msg": exc.message,
                                                 "type": "input_error"}]})

    @app.exception_handler(MarginproofError)
    async def _other(_: Request, exc: MarginproofError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})
