"""Accounts: create/replace (operator), read (owner or operator), fills and transfers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from marginproof.engine.entries import EntryKind, parse_account, parse_fill, parse_transfer
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
        binding=BindingOut(underlying=und, scenario_index=j, scenario_label=label))


def _append(container: Any, entry: NewEntry) -> Accepted:
    (res,) = container.gateway.append([entry])
    return Accepted(seq=res.seq, duplicate=res.duplicate)


def _known(container: Any, account_id: str) -> None:
    if not container.repo.account_exists(account_id):
        raise HTTPException(404, "unknown account")


@router.post("", status_code=202, response_model=Accepted)
def create_account(body: AccountCreate, principal: OperatorDep,
                   container: ContainerDep) -> Accepted:
    """Create or replace an account (positions and collateral); margined asynchronously."""
    data = body.model_dump()
    parse_account(data)  # full validation before anything is stored
    container.repo.upsert_account(body.account_id, container.clock_ms())
    return _append(container, NewEntry(EntryKind.ACCOUNT, data, f"key:{principal.key_id}"))


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
    return _append(container, NewEntry(EntryKind.FILL, data, f"key:{principal.key_id}"))


@router.post("/{account_id}/transfers", status_code=202, response_model=Accepted)
def add_transfer(account_id: str, body: TransferIn, principal: OperatorDep,
                 container: ContainerDep) -> Accepted:
    """Collateral deposit (positive) or withdrawal (negative)."""
    _known(container, account_id)
    data = {"account_id": account_id, **body.model_dump()}
    parse_transfer(data)
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
