"""Health, metrics and market injection."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from marginproof.engine.entries import EntryKind
from marginproof.io.formats import market_from_dict, market_to_dict
from marginproof.service.deps import ContainerDep, OperatorDep
from marginproof.service.schemas import Accepted, HealthOut, MarketIn
from marginproof.storage.base import NewEntry

router = APIRouter(tags=["system"])


@router.get("/health", response_model=HealthOut)
def health(container: ContainerDep) -> HealthOut:
    """Liveness and lag: database, bus, log position, engine checkpoints, stale feeds,
    degraded underlyings, stalled engines (entries waiting, no progress for
    ``stall_after_s``), log entries refused or quarantined, and the worker lanes."""
    try:
        version = container.repo.schema_version()
        seq = container.repo.last_seq()
        db = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        version, seq, db = 0, 0, f"error: {type(exc).__name__}"
    stale = sorted(s for f in container.feeds for s in getattr(f, "flagged", ()))
    degraded = sorted({u for r in container.runners for u in r.engine.degraded})
    after_s = container.settings.stall_after_s
    stalled = sorted(r.consumer for r in container.runners if r.stalled(after_s, seq))
    stalled += sorted(t.name for t in container.engine_threads() if not t.is_alive())
    refused = sorted((x for r in container.runners for x in r.refused),
                     key=lambda x: -int(x["seq"]))[:20]
    errors = {r.consumer: r.last_error for r in container.runners if r.last_error}
    ok = db == "ok" and not stale and not degraded and not stalled and not refused
    return HealthOut(status="ok" if ok else "degraded", database=db, schema_version=version,
                     bus=container.settings.bus_url.split("://")[0], log_seq=seq,
                     engines={r.consumer: r.committed_seq for r in container.runners},
                     stale_streams=stale, degraded_underlyings=degraded,
                     stalled_engines=sorted(set(stalled)), engine_errors=errors,
                     refused_entries=refused, workers=container.pool.stats())


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics(container: ContainerDep) -> Response:
    """Prometheus exposition."""
    return Response(generate_latest(container.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


@router.post("/market", status_code=202, response_model=Accepted, tags=["market"])
def post_market(body: MarketIn, principal: OperatorDep, container: ContainerDep) -> Accepted:
    """Seed or replace market data with a full snapshot (operators; feeds do this live)."""
    snap = market_from_dict(body.snapshot)  # InputError -> 422, nothing logged
    (res,) = container.gateway.append([NewEntry(EntryKind.MARKET, market_to_dict(snap),
                                                f"key:{principal.key_id}")])
    return Accepted(seq=res.seq, duplicate=res.duplicate)
