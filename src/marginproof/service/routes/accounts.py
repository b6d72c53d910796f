"""Accounts: create/replace (operator), read (owner or operator), fills and transfers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from marginproof.engine.entries import EntryKind, parse_account, parse_fill, parse_transfer
from marginproof.errors import InputError
from marginproof.instruments.collateral import value_collateral
from marginproof.instruments.names import parse_instrument
from marginproof.instruments.portfolio import Portfolio
from marginproof.instruments.resolved import resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.service.deps import ContainerDep, OperatorDep, PrincipalDep, check_account
from marginproof.service.schemas import (
    Accepted,
    AccountCreate,
    AccountList,
    AccountOut,
    BindingOut,
    EventsOut,
    FillIn,
    HistoryOut,
    MarginOut,
    TransferIn,
)
from marginproof.storage.base import NewEntry

router = APIRouter(prefix="/accounts", tags=["accounts"])
Limit = Annotated[int, Query(ge=1, le=1000)]


def margin_out(container: Any, row: dict[str, Any]) -> MarginOut:
    """API view of a stored margin row, with the binding scenario's label."""
    und, j = row.get("binding_underlying"), row.get("binding_scenario")
    label = None
    if und and j is not None:
        label = container.engine_label(und, int(j))
    return MarginOut(
        account_id=row["account_id"], seq=row["seq"], market_ts_ms=row["market_ts_ms"],
        model=row["model"], params_hash=row["params_hash"], cause=row["cause"],
        initial_margin=row["initial_margin"], maintenance_margin=row["maintenance_margin"],
        equity=row["equity"], status=row["status"], held=row["held"],
        held_reason=row.get("held_reason") if row["held"] else None,
        binding=BindingOut(underlying=und, scenario_index=j, scenario_label=label))


def _append(container: Any, entry: NewEntry) -> Accepted:
    (res,) = container.gateway.append([entry])
    return Accepted(seq=res.seq, duplicate=res.duplicate)


def account_known(container: Any, account_id: str) -> bool:
    """An account created through the API, or through the log (feeds, ``engine run``, the
    workload) and committed by an engine."""
    repo = container.repo
    return bool(repo.account_exists(account_id) or repo.account_state(account_id) is not None)


def _known(container: Any, account_id: str) -> None:
    if not account_known(container, account_id):
        raise HTTPException(404, "unknown account")


def unpriceable(positions: dict[str, float], market: MarketSnapshot | None,
                allow_expired: bool = False) -> dict[str, str]:
    """Check positions as the CLI would: an instrument the service cannot name, or on an
    underlying it has no market for, is an ``InputError`` (422); an expired one too. Returns
    the instruments that are known but cannot be priced right now (no vol, no mark): they
    are accepted, and the account is reported ``degraded`` until they can be."""
    out: dict[str, str] = {}
    for name, q in positions.items():
        inst = parse_instrument(name, f"positions.{name}")
        if market is None or inst.underlying not in market.index_prices:
            raise InputError(f"positions.{name}", f"no market for {inst.underlying}: the "
                             "service cannot margin this instrument")
        try:
            resolve(Portfolio.of({name: q}), market)
        except InputError as exc:
            if "expired" in exc.message and not allow_expired:
                raise InputError(f"positions.{name}", exc.message) from None
            out[name] = f"{exc.field}: {exc.message}"
    return out


def check_collateral(collateral: dict[str, float], market: MarketSnapshot | None) -> None:
    """Every collateral asset needs a haircut and a price (as in the CLI), whatever its sign:
    a debt the service cannot value would otherwise count as nothing."""
    if not collateral:
        return
    if market is None:
        for asset in collateral:
            if asset not in ("USD", "USDC", "USDT"):
                raise InputError(f"collateral.{asset}", "no market to value this asset")
        market = MarketSnapshot(datetime(2000, 1, 1, tzinfo=UTC), {"USD": 1.0})
    value_collateral(collateral, market)


@router.post("", status_code=202, response_model=Accepted)
def create_account(body: AccountCreate, principal: OperatorDep,
                   container: ContainerDep) -> Accepted:
    """Create or replace an account from a portfolio file (positions and collateral);
    margined asynchronously. Refused (422) as the CLI refuses: unknown instruments, an
    underlying with no market, expired contracts, collateral that cannot be valued. An
    instrument that is known but unpriceable right now is accepted with ``status:
    degraded`` (its margin is held, never zero, and an alert is raised) until it prices."""
    positions, collateral = body.positions_map(), dict(body.collateral)
    data: dict[str, Any] = {"account_id": body.account_id, "positions": positions,
                            "collateral": collateral}
    parse_account(data)  # full validation before anything is stored
    market = container.market()
    unpriced = unpriceable(positions, market)
    check_collateral(collateral, market)
    container.repo.upsert_account(body.account_id, container.clock_ms())
    out = _append(container, NewEntry(EntryKind.ACCOUNT, data, f"key:{principal.key_id}"))
    if unpriced:
        out.status, out.unpriced = "degraded", unpriced
    return out


@router.get("", response_model=AccountList)
def list_accounts(principal: OperatorDep, container: ContainerDep, limit: Limit = 1000,
                  after: Annotated[str | None, Query(max_length=128)] = None) -> AccountList:
    """Account ids in order (paginate with ``after``)."""
    return AccountList(accounts=container.repo.list_accounts(limit, after))


@router.get("/{account_id}", response_model=AccountOut)
def get_account(account_id: str, principal: PrincipalDep,
                container: ContainerDep) -> AccountOut:
    """Positions, collateral and latest margin of an account."""
    check_account(principal, container, account_id)
    _known(container, account_id)
    state = container.repo.account_state(account_id)
    latest = container.repo.latest_margin(account_id)
    return AccountOut(account_id=account_id,
                      positions=state[1] if state else {}, collateral=state[2] if state else {},
                      as_of_seq=state[0] if state else None,
                      margin=margin_out(container, latest) if latest else None)


@router.post("/{account_id}/fills", status_code=202, response_model=Accepted)
def add_fill(account_id: str, body: FillIn, principal: OperatorDep,
             container: ContainerDep) -> Accepted:
    """A trade changes one position by ``quantity``."""
    _known(container, account_id)
    data = {"account_id": account_id, **body.model_dump()}
    parse_fill(data)
    # a fill may close an expired position (it is held until one does)
    unpriceable({body.instrument: body.quantity}, container.market(), allow_expired=True)
    return _append(container, NewEntry(EntryKind.FILL, data, f"key:{principal.key_id}"))


@router.post("/{account_id}/transfers", status_code=202, response_model=Accepted)
def add_transfer(account_id: str, body: TransferIn, principal: OperatorDep,
                 container: ContainerDep) -> Accepted:
    """Collateral deposit (positive) or withdrawal (negative)."""
    _known(container, account_id)
    data = {"account_id": account_id, **body.model_dump()}
    parse_transfer(data)
    check_collateral({body.asset: body.amount}, container.market())
    return _append(container, NewEntry(EntryKind.TRANSFER, data, f"key:{principal.key_id}"))


@router.get("/{account_id}/margin", response_model=MarginOut)
def get_margin(account_id: str, principal: PrincipalDep, container: ContainerDep) -> MarginOut:
    """Latest margin with its explanation (model, parameter hash, market time, binding)."""
    check_account(principal, container, account_id)
    latest = container.repo.latest_margin(account_id)
    if latest is None:
        raise HTTPException(404, "no margin computed for this account yet")
    return margin_out(container, latest)


@router.get("/{account_id}/history", response_model=HistoryOut)
def get_history(account_id: str, principal: PrincipalDep, container: ContainerDep,
                limit: Limit = 100,
                before_seq: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> HistoryOut:
    """Margin history, newest first."""
    check_account(principal, container, account_id)
    rows = container.repo.margin_history(account_id, limit, before_seq)
    return HistoryOut(account_id=account_id, margins=[margin_out(container, r) for r in rows])


@router.get("/{account_id}/events", response_model=EventsOut)
def get_events(account_id: str, principal: PrincipalDep, container: ContainerDep,
               limit: Limit = 100) -> EventsOut:
    """Margin calls, liquidation signals and restorations of the account, newest first."""
    check_account(principal, container, account_id)
    return EventsOut(account_id=account_id,
                     events=container.repo.account_events(account_id, limit))
