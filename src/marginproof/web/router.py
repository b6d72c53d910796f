"""Routes of the web console: the page and its static files, a small JSON API, a WebSocket.

Authentication is the service's: every ``/console/api/*`` route takes the ``X-API-Key``
header, an account key sees only its own account (403 otherwise) and operator keys see
everything. The console stream (``/console/api/stream``) accepts the key like the service's
account stream (``X-API-Key`` header or ``api_key`` query parameter) and also as a WebSocket
sub-protocol ``mp.key.<key>`` (what the browser uses: a key in a URL ends up in access logs).

These routes are not in the published OpenAPI schema (``include_in_schema=False``): they are
the console's own interface, documented in ``docs/web.md``, and may change with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import mimetypes
import secrets
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, RedirectResponse, Response

from marginproof.errors import InputError
from marginproof.instruments.portfolio import Portfolio
from marginproof.instruments.resolved import resolve
from marginproof.service.auth import Principal, authenticate
from marginproof.service.deps import ContainerDep, PrincipalDep, check_account
from marginproof.service.routes.accounts import account_known
from marginproof.service.routes.whatif import compute_whatif
from marginproof.service.schemas import WhatIfIn
from marginproof.service.sessions import CLOSE_UNAUTHENTICATED, refuse, sessions_of, watch_key
from marginproof.web import views
from marginproof.web.config import WebSettings
from marginproof.web.hub import ConsoleHub
from marginproof.web.proofs import ProofsView
from marginproof.web.reports import MAIN_FILES, ReportLibrary

STATIC_DIR = Path(__file__).parent / "static"
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            "connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
REPORT_CSP = ("sandbox; default-src 'none'; img-src 'self' data:; style-src 'self' "
              "'unsafe-inline'; font-src 'self' data:; frame-ancestors 'self'")
TOKEN_TTL_S = 600
SUBPROTOCOL = "mp.v1"
KEY_PROTOCOL_PREFIX = "mp.key."

router = APIRouter(include_in_schema=False)


# -- state ---------------------------------------------------------------------------------
def web_settings(app: Any) -> WebSettings:
    ws = getattr(app.state, "web_settings", None)
    if ws is None:
        ws = WebSettings()
        app.state.web_settings = ws
    return ws


def _hub(app: Any) -> ConsoleHub:
    hub = getattr(app.state, "console_hub", None)
    if hub is None:
        hub = ConsoleHub(app.state.container)
        app.state.console_hub = hub
    return hub


def _secret(app: Any) -> bytes:
    s = getattr(app.state, "console_secret", None)
    if s is None:
        s = secrets.token_bytes(32)
        app.state.console_secret = s
    return s


def _label(container: Any) -> Any:
    return container.engine_label


# -- page and static files ---------------------------------------------------------------------
def _static(name: str) -> Response:
    if not name or "\\" in name or any(p in ("", ".", "..") for p in name.split("/")):
        raise HTTPException(404, "not found")
    path = (STATIC_DIR / name).resolve()
    if not path.is_relative_to(STATIC_DIR.resolve()) or not path.is_file():
        raise HTTPException(404, "not found")
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if path.suffix == ".js":
        media = "text/javascript"
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if path.suffix == ".html":
        headers.update({"Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer",
                        "X-Frame-Options": "DENY"})
    return FileResponse(path, media_type=media, headers=headers)


@router.get("/")
def console_page() -> Response:
    """The console (a single page; views are chosen by the URL fragment)."""
    return _static("index.html")


@router.get("/console")
def console_redirect() -> Response:
    return RedirectResponse("/", status_code=307)


@router.get("/console/static/{name:path}")
def console_static(name: str) -> Response:
    return _static(name)


# -- who am I, market --------------------------------------------------------------------------
@router.get("/console/api/me")
def me(principal: PrincipalDep, request: Request) -> dict[str, Any]:
    """The caller's key: scope and (account keys) account; which console pages have data."""
    ws = web_settings(request.app)
    return {"key_id": principal.key_id, "scope": principal.scope,
            "account_id": principal.account_id, "label": principal.label,
            "proofs": ws.proofs_dir is not None}


@router.get("/console/api/market")
def market(principal: PrincipalDep, container: ContainerDep) -> dict[str, Any]:
    """Current market time, index prices and the instruments it prices (what-if hints)."""
    snap = container.market()
    if snap is None:
        return {"timestamp": None, "index_prices": {}, "instruments": []}
    names: list[str] = []
    for u in sorted(snap.index_prices):
        names += [f"{u}-PERPETUAL", f"{u}_USDC-PERPETUAL", f"{u}_USDT-PERPETUAL", f"{u}_USDC"]
    names += sorted(snap.implied_vols)[:2000]
    return {"timestamp": snap.timestamp.isoformat(), "index_prices": dict(snap.index_prices),
            "instruments": names}


# -- dashboard -----------------------------------------------------------------------------------
def _all_rows(container: Any) -> list[dict[str, Any]]:
    """Latest margin of every account: from the engines' memory when this process runs every
    partition, else from storage (one read per account)."""
    s = container.settings
    owned = sorted(r.config.partition for r in container.runners)
    rows: list[dict[str, Any]] = []
    if owned == list(range(s.partitions)) and any(r.engine.acc_ids for r in container.runners):
        for r in container.runners:
            with r.lock:
                snap = views.engine_snapshot(r.engine)
            rows += views.snapshot_rows(snap)
        return rows
    after: str | None = None
    while True:
        ids = container.repo.list_accounts(1000, after)
        for a in ids:
            row = container.repo.latest_margin(a)
            if row is not None:
                rows.append(row)
        if len(ids) < 1000 or len(rows) >= 100_000:
            return rows
        after = ids[-1]


def _alerts(container: Any) -> dict[str, Any]:
    stale = sorted(s for f in container.feeds for s in getattr(f, "flagged", ()))
    degraded = sorted({u for r in container.runners for u in r.engine.degraded})
    now = container.clock_ms()
    scheduled = [{"model": c.model, "params_hash": c.params_hash, "changed_by": c.changed_by,
                  "effective_at_ms": c.effective_at_ms, "changed_at_ms": c.changed_at_ms}
                 for c in container.repo.params_changes() if c.effective_at_ms > now]
    return {"stale_streams": stale, "degraded_underlyings": degraded, "scheduled": scheduled}


@router.get("/console/api/overview")
def overview(principal: PrincipalDep, container: ContainerDep, request: Request,
             limit: Annotated[int | None, Query(ge=1, le=100_000)] = None) -> dict[str, Any]:
    """Accounts ranked by utilisation (IM / equity) and the current alerts.

    Operators get every account (top ``limit``); an account key gets its own account only.
    """
    lim = limit or web_settings(request.app).overview_limit
    if principal.is_operator:
        rows = _all_rows(container)
        events: list[dict[str, Any]] = []
    else:
        acc = principal.account_id
        assert acc is not None
        latest = container.repo.latest_margin(acc)
        rows = [latest] if latest else []
        events = container.repo.account_events(acc, 20)
    out = views.rank_accounts(rows, lim)
    out["accounts"] = [views.normalize_row(r, _label(container)) for r in out["accounts"]]
    snap = container.market()
    out.update(alerts=_alerts(container), events=events,
               market_timestamp=None if snap is None else snap.timestamp.isoformat(),
               engine_model=container.engine_model().name,
               engine_params_hash=container.engine_model().params_hash)
    return out


@router.get("/console/api/accounts/{account_id}/detail")
def account_detail(account_id: str, principal: PrincipalDep,
                   container: ContainerDep) -> dict[str, Any]:
    """Positions, collateral, latest margin and its explanation under the engine's model
    (components, binding scenario, greeks by underlying and expiry, risk matrix)."""
    check_account(principal, container, account_id)
    if not account_known(container, account_id):
        raise HTTPException(404, "unknown account")
    state = container.repo.account_state(account_id)
    positions = {k: v for k, v in (state[1] if state else {}).items() if v != 0.0}
    latest = container.repo.latest_margin(account_id)
    out: dict[str, Any] = {
        "account_id": account_id, "positions": positions,
        "collateral": state[2] if state else {}, "as_of_seq": state[0] if state else None,
        "margin": None if latest is None else views.normalize_row(latest, _label(container)),
        "explanation": None, "explanation_error": None}
    snap = container.market()
    if positions and snap is not None:
        # the model in force bound to the engines' live risk factors: the figure the engine
        # computes (a history model alone refuses a market long after its history ends)
        model = container.engine_model()
        try:
            book = resolve(Portfolio.of(positions), snap)
            out["explanation"] = views.explain(model.margin(Portfolio.of(positions), snap),
                                               model, book, positions)
        except InputError as exc:
            out["explanation_error"] = f"{exc.field}: {exc.message}"
    return out


# -- what-if -------------------------------------------------------------------------------------
@router.post("/console/api/whatif")
async def console_whatif(body: WhatIfIn, principal: PrincipalDep,
                         container: ContainerDep) -> dict[str, Any]:
    """Like ``POST /whatif`` (same body, same rules, same worker pool, nothing stored) plus the
    explanation the console draws: components, greeks by expiry and the risk matrix as
    heat-map data, and before / after / change of IM with the equity and excess."""
    return await compute_whatif(body, principal, container, "console")


# -- reports -------------------------------------------------------------------------------------
def _library(request: Request) -> ReportLibrary:
    return ReportLibrary(web_settings(request.app).reports_dir)


def _token(secret: bytes, scope: str, exp: int) -> str:
    mac = hmac.new(secret, f"{exp}|{scope}".encode(), hashlib.sha256).hexdigest()[:40]
    return f"{exp}-{mac}"


def _scope(path: str) -> str:
    """What a report's link opens: its folder (a folder report: its main file and charts) or
    exactly its one file. Never the whole reports directory."""
    folder, _, name = path.rpartition("/")
    if folder and name in MAIN_FILES:
        return f"d:{folder}"
    return f"f:{path}"


@router.get("/console/api/reports")
def list_reports(principal: PrincipalDep, request: Request) -> dict[str, Any]:
    """Backtest and stress reports (newest first); ``url`` opens one for this session only."""
    lib = _library(request)
    exp = int(time.time()) + TOKEN_TTL_S
    secret = _secret(request.app)
    reports = []
    for r in lib.reports():
        d = r.to_dict()
        d["url"] = f"/console/reports/{_token(secret, _scope(r.path), exp)}/{r.path}"
        reports.append(d)
    return {"reports_dir": str(lib.root), "reports": reports}


@router.get("/console/reports/{token}/{path:path}")
def report_file(token: str, path: str, request: Request) -> Response:
    """A report file under a short-lived capability URL from ``/console/api/reports`` (an
    ``<iframe>`` or ``<img>`` cannot send the API key header). Served with a sandboxing CSP:
    report HTML can style itself and show images, never run scripts."""
    exp_s, _, _mac = token.partition("-")
    if not exp_s.isdigit() or len(exp_s) > 12 or int(exp_s) < time.time():
        raise HTTPException(401, "report link expired: reload the report list")
    # a link opens its own report: exactly its file, or for a folder report the files in that
    # folder and below (the report and its charts) -- never another report
    secret, exp = _secret(request.app), int(exp_s)
    parts = path.split("/")[:-1]
    scopes = [f"f:{path}"] + [f"d:{'/'.join(parts[:k])}" for k in range(1, len(parts) + 1)]
    ok = any(hmac.compare_digest(token, _token(secret, sc, exp)) for sc in scopes)
    if not ok:
        raise HTTPException(401, "invalid report link")
    lib = _library(request)
    try:
        real = lib.resolve(path)
    except InputError:
        raise HTTPException(404, "no such report file") from None
    return FileResponse(real, media_type=lib.media_type(real), headers={
        "Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=300", "Referrer-Policy": "no-referrer"})


# -- proofs --------------------------------------------------------------------------------------
def _proofs(request: Request) -> ProofsView:
    d = web_settings(request.app).proofs_dir
    if d is None:
        raise HTTPException(404, "no proofs directory configured (MARGINPROOF_PROOFS_DIR)")
    return ProofsView(d)


@router.get("/console/api/proofs/latest")
def latest_epoch(principal: PrincipalDep, request: Request) -> dict[str, Any]:
    """The latest signed epoch record, its tree head and the published operator keys."""
    latest = _proofs(request).latest()
    if latest is None:
        raise HTTPException(404, "no epoch has been proven yet")
    return latest


@router.get("/console/api/proofs/mine")
def my_proof(principal: PrincipalDep, request: Request, container: ContainerDep,
             account_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
             epoch: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> Response:
    """The caller's private inclusion proof (canonical JSON, with the nonce): account keys get
    their own; an operator names ``account_id``."""
    acc = account_id or principal.account_id
    if acc is None:
        raise InputError("account_id", "an operator key must name the account")
    check_account(principal, container, acc)
    view = _proofs(request)
    try:
        data = view.proof_bytes(acc, epoch)
    except InputError as exc:
        raise HTTPException(404, exc.message) from None
    return Response(data, media_type="application/json", headers={
        "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="proof-{acc}.json"'})


# -- stream --------------------------------------------------------------------------------------
def _ws_key(websocket: WebSocket) -> tuple[str | None, str | None]:
    """``(key, subprotocol to accept)`` from the header, the query or a sub-protocol."""
    key = websocket.headers.get("x-api-key") or websocket.query_params.get("api_key")
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")
               if p.strip()]
    for p in offered:
        if p.startswith(KEY_PROTOCOL_PREFIX) and key is None:
            key = p[len(KEY_PROTOCOL_PREFIX):]
    return key, (SUBPROTOCOL if SUBPROTOCOL in offered else None)


@router.websocket("/console/api/stream")
async def console_stream(websocket: WebSocket) -> None:
    """Margin updates and alerts for this key (see :mod:`marginproof.web.hub`).

    Close codes as the service's stream: 4401 bad, missing or revoked key (also when the key is
    revoked while the stream is open), sent after the handshake.
    """
    app = websocket.app
    container = app.state.container
    key, proto = _ws_key(websocket)
    principal, reason = await asyncio.to_thread(authenticate, container.repo, key)
    if principal is None or key is None:
        container.metrics.auth_failures.labels(reason).inc()
        await refuse(websocket, CLOSE_UNAUTHENTICATED, f"API key {reason}", proto)
        return
    hub = _hub(app)
    await hub.ensure_started()
    await websocket.accept(subprotocol=proto)
    sessions = sessions_of(app)
    sessions.add(principal.key_id, websocket)
    client = hub.attach(principal)
    flush_s = web_settings(app).stream_flush_s
    try:
        await websocket.send_json(_hello(principal))
        sender = asyncio.ensure_future(_send_loop(websocket, client, container, flush_s))
        receiver = asyncio.ensure_future(_receive_loop(websocket))
        watcher = asyncio.ensure_future(watch_key(websocket, container, key,
                                                  container.settings.ws_recheck_s))
        done, pending = await asyncio.wait({sender, receiver, watcher},
                                           return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await t
        for t in done:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                t.result()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sessions.remove(principal.key_id, websocket)
        hub.detach(client)


def _hello(p: Principal) -> dict[str, Any]:
    return {"type": "hello", "key_id": p.key_id, "scope": p.scope, "account_id": p.account_id}


async def _send_loop(websocket: WebSocket, client: Any, container: Any, flush_s: float) -> None:
    label = _label(container)
    while True:
        await client.ready.wait()
        await asyncio.sleep(flush_s)  # coalesce: one message per interval
        msg = client.take()
        if msg is None:
            continue
        msg["margins"] = [views.normalize_row(r, label) for r in msg["margins"]]
        await websocket.send_json(msg)


async def _receive_loop(websocket: WebSocket) -> None:
    while True:
        await websocket.receive_text()  # raises on disconnect; client messages are ignored
