"""The feedback loop over HTTP: live backtest statistics, scaling proposals and their approval.

* ``GET /backtest/live``: per engine partition, per model, the rolling-window statistics of the
  live margins (pooled Kupiec / Christoffersen, traffic-light zone, zones of the books), the
  last settlements and the next settlement time. Everyone may read it (it names no account).
* ``GET /backtest/live/accounts/{id}``: one book's exceptions and coverage summary (owner or
  operator).
* ``GET /proposals``, ``GET /proposals/{id}``: scaling proposals with their evidence, status and
  effective time.
* ``POST /proposals/{id}/approve`` (operator): logs the proposed parameter set as a scheduled
  parameter change (the existing governance: a ``params`` entry and its audit row) effective at
  the announced time, or at the minimum notice from now if that is later. The engine sees the
  entry, marks the proposal approved, and activates it at its time. With
  ``MARGINPROOF_AUTO_APPROVE_PROPOSALS=true`` the service approves every proposal itself
  (:func:`auto_approver`), through the same path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from marginproof.backtest.live import Proposal
from marginproof.service.deps import ContainerDep, OperatorDep, PrincipalDep, check_account
from marginproof.service.schemas import ParamsChangeOut

router = APIRouter(tags=["feedback"])


class PartitionBacktestOut(BaseModel):
    partition: int
    models: dict[str, dict[str, Any]]
    next_settlement_ms: int | None
    settlements: list[dict[str, Any]]


class LiveBacktestOut(BaseModel):
    model_in_force: str
    alpha: float
    window_days: int
    settlement_hour_utc: int
    partitions: list[PartitionBacktestOut]


class BookBacktestOut(BaseModel):
    account_id: str
    stats: dict[str, dict[str, Any]]


class ProposalsOut(BaseModel):
    proposals: list[dict[str, Any]]


class ApprovalOut(BaseModel):
    proposal: dict[str, Any]
    change: ParamsChangeOut


def _loops(container: Any) -> list[tuple[Any, Any]]:
    """``(runner, feedback loop)`` of every owned partition that runs one."""
    return [(r, r.engine.feedback) for r in container.runners
            if getattr(r.engine, "feedback", None) is not None]


@router.get("/backtest/live", response_model=LiveBacktestOut)
def live_backtest(principal: PrincipalDep, container: ContainerDep) -> LiveBacktestOut:
    """Rolling backtest of the live margins at each daily settlement, per model."""
    loops = _loops(container)
    if not loops:
        raise HTTPException(409, "the engines run no feedback loop")
    parts = []
    cfg = loops[0][1].backtest.config
    for r, fb in loops:
        with r.lock:
            bt = fb.backtest
            parts.append(PartitionBacktestOut(
                partition=r.config.partition, models=bt.all_stats(),
                next_settlement_ms=bt.next_settle_ms,
                settlements=[x.to_dict() for x in list(bt.reports)[-30:]]))
    return LiveBacktestOut(model_in_force=container.engine_model().name, alpha=cfg.alpha,
                           window_days=cfg.window_days,
                           settlement_hour_utc=cfg.settlement_hour_utc, partitions=parts)


@router.get("/backtest/live/accounts/{account_id}", response_model=BookBacktestOut)
def live_backtest_account(account_id: str, principal: PrincipalDep,
                          container: ContainerDep) -> BookBacktestOut:
    """One book's exceptions over each model's window (Kupiec, Christoffersen, zone)."""
    check_account(principal, container, account_id)
    r = container.runner_for(account_id)
    fb = getattr(r.engine, "feedback", None) if r is not None else None
    if r is None or fb is None:
        raise HTTPException(404, "unknown account")
    with r.lock:
        i = r.engine.acc_index.get(account_id)
        if i is None:
            raise HTTPException(404, "unknown account")
        out = {m: s for m in sorted(fb.backtest.windows)
               if (s := fb.backtest.book_stats(m, i)) is not None}
    return BookBacktestOut(account_id=account_id, stats=out)


def _all_proposals(container: Any) -> list[tuple[Any, Proposal]]:
    out: list[tuple[Any, Proposal]] = []
    for r, fb in _loops(container):
        with r.lock:
            out.extend((r, p) for p in fb.backtest.proposals)
    return out


@router.get("/proposals", response_model=ProposalsOut)
def proposals(principal: PrincipalDep, container: ContainerDep) -> ProposalsOut:
    """Every scaling proposal (newest first) with its evidence and status."""
    items = [p.to_dict() for _, p in _all_proposals(container)]
    items.sort(key=lambda d: (-int(d["created_seq"]), d["proposal_id"]))
    return ProposalsOut(proposals=items)


def _find(container: Any, proposal_id: str) -> Proposal:
    for _, p in _all_proposals(container):
        if p.proposal_id == proposal_id:
            return p
    raise HTTPException(404, f"unknown proposal {proposal_id!r}")


@router.get("/proposals/{proposal_id}")
def proposal(proposal_id: str, principal: PrincipalDep, container: ContainerDep
             ) -> dict[str, Any]:
    """One proposal with its evidence."""
    return _find(container, proposal_id).to_dict()


def approve(container: Any, p: Proposal, by: str) -> Any:
    """Schedule ``p``'s parameter set (idempotent: an existing identical change is returned)."""
    notice_ms = int(container.settings.params_min_notice_s * 1000)
    eff = max(int(p.effective_at_ms), container.clock_ms() + notice_ms)
    for c in container.repo.params_changes(p.model):
        if c.params_hash == p.params_hash and c.log_seq > p.created_seq:
            return c  # already approved (a retried request, or a replayed auto-approval)
    from marginproof.models.registry import model_class

    instance = model_class(p.model)(p.params)  # validates (InputError -> 422)
    change = container.repo.record_params_change(p.model, instance.params_hash,
                                                 dict(instance.params), by, eff)
    for r in container.runners:
        r.wake.set()
    container.announce({"type": "params_scheduled", "model": p.model,
                        "params_hash": instance.params_hash, "effective_at_ms": eff,
                        "changed_by": change.changed_by, "log_seq": change.log_seq,
                        "proposal_id": p.proposal_id})
    return change


def _change_out(c: Any) -> ParamsChangeOut:
    return ParamsChangeOut(change_id=c.change_id, model=c.model, params_hash=c.params_hash,
                           changed_by=c.changed_by, changed_at_ms=c.changed_at_ms,
                           effective_at_ms=c.effective_at_ms, log_seq=c.log_seq)


@router.post("/proposals/{proposal_id}/approve", status_code=202, response_model=ApprovalOut)
def approve_proposal(proposal_id: str, principal: OperatorDep, container: ContainerDep
                     ) -> ApprovalOut:
    """Approve an open proposal: its parameters are scheduled for the announced time."""
    p = _find(container, proposal_id)
    if p.status != "open":
        raise HTTPException(409, f"proposal {proposal_id} is {p.status}, not open")
    who = f"{principal.label or principal.key_id} (approves proposal {proposal_id})"
    change = approve(container, p, who)
    return ApprovalOut(proposal=p.to_dict(), change=_change_out(change))


def auto_approver(container: Any) -> Callable[[Any], None]:
    """Runner listener approving every proposal the engine makes (the auto-approve setting)."""
    def listen(out: Any) -> None:
        for ev in out.events:
            if getattr(ev, "type", "") != "scaling_proposed":
                continue
            for _, p in _all_proposals_unlocked(container):
                if p.proposal_id == ev.subject and p.status == "open":
                    approve(container, p, f"auto-approve (proposal {p.proposal_id})")
    return listen


def _all_proposals_unlocked(container: Any) -> list[tuple[Any, Proposal]]:
    # called from the engine thread inside ``step`` (which already holds the runner lock for
    # the entry it applied, then releases it): read without taking the lock again
    return [(r, p) for r, fb in _loops(container) for p in fb.backtest.proposals]
