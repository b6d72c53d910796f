"""API key management (operator)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request

from marginproof.service.auth import create_key
from marginproof.service.deps import ContainerDep, OperatorDep
from marginproof.service.routes.accounts import account_known
from marginproof.service.schemas import KeyCreate, KeyCreated, KeyOut, KeysOut
from marginproof.service.sessions import sessions_of
from marginproof.storage.base import KeyRecord

router = APIRouter(prefix="/keys", tags=["keys"])


def _out(r: KeyRecord) -> KeyOut:
    return KeyOut(key_id=r.key_id, scope=r.scope, account_id=r.account_id, label=r.label,
                  created_at_ms=r.created_at_ms, created_by=r.created_by,
                  revoked_at_ms=r.revoked_at_ms)


@router.post("", status_code=201, response_model=KeyCreated)
def new_key(body: KeyCreate, principal: OperatorDep, container: ContainerDep) -> KeyCreated:
    """Create a key; the secret is in the response only."""
    if body.account_id is not None and not account_known(container, body.account_id):
        raise HTTPException(404, "unknown account")
    key, rec = create_key(container.repo, body.scope, body.account_id, body.label,
                          principal.label or principal.key_id, container.clock_ms())
    return KeyCreated(key=key, **_out(rec).model_dump())


@router.get("", response_model=KeysOut)
def list_keys(principal: OperatorDep, container: ContainerDep) -> KeysOut:
    """Every key (never the secrets nor their hashes)."""
    return KeysOut(keys=[_out(r) for r in container.repo.list_keys()])


@router.delete("/{key_id}", status_code=204)
async def revoke(key_id: str, principal: OperatorDep, container: ContainerDep,
                 request: Request) -> None:
    """Revoke a key at once: its requests are refused and its open streams closed (4401)."""
    if not await asyncio.to_thread(container.repo.revoke_key, key_id, container.clock_ms()):
        raise HTTPException(404, "no such active key")
    await sessions_of(request.app).revoke(key_id)
