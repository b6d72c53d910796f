"""Parameters: everyone sees the set in force and scheduled changes; operators schedule them."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from marginproof.apc.stage import validate_params as validate_live_path
from marginproof.errors import InputError
from marginproof.models.registry import available_models, model_class
from marginproof.service.deps import ContainerDep, OperatorDep, PrincipalDep
from marginproof.service.schemas import (
    ParamsChangeIn,
    ParamsChangeOut,
    ParamsChangesOut,
    ParamsOut,
)
from marginproof.storage.base import ParamsChange

router = APIRouter(prefix="/parameters", tags=["parameters"])


def _out(c: ParamsChange) -> ParamsChangeOut:
    return ParamsChangeOut(change_id=c.change_id, model=c.model, params_hash=c.params_hash,
                           changed_by=c.changed_by, changed_at_ms=c.changed_at_ms,
                           effective_at_ms=c.effective_at_ms, log_seq=c.log_seq)


@router.get("", response_model=ParamsOut)
def get_parameters(principal: PrincipalDep, container: ContainerDep) -> ParamsOut:
    """The engine's parameters in force and every change scheduled for later."""
    model = container.engine_model()
    now = container.clock_ms()
    scheduled = [_out(c) for c in container.repo.params_changes()
                 if c.effective_at_ms > now]
    return ParamsOut(engine_model=model.name, params_hash=model.params_hash,
                     params=dict(model.params), scheduled=scheduled,
                     min_notice_s=container.settings.params_min_notice_s,
                     available_models=list(available_models()))


@router.get("/changes", response_model=ParamsChangesOut)
def list_changes(principal: PrincipalDep, container: ContainerDep) -> ParamsChangesOut:
    """Audit log of parameter changes: who, when, what (hash) and from when."""
    return ParamsChangesOut(changes=[_out(c) for c in container.repo.params_changes()])


@router.put("/{model}", status_code=202, response_model=ParamsChangeOut)
def schedule_change(model: str, body: ParamsChangeIn, principal: OperatorDep,
                    container: ContainerDep) -> ParamsChangeOut:
    """Schedule a new parameter set; it must be announced at least ``min_notice_s`` ahead."""
    if model not in available_models():
        raise HTTPException(404, f"unknown model {model!r}")
    if body.effective_at.tzinfo is None:
        raise InputError("effective_at", "must carry a timezone")
    eff_ms = int(body.effective_at.timestamp() * 1000)
    notice_ms = int(container.settings.params_min_notice_s * 1000)
    if eff_ms < container.clock_ms() + notice_ms:
        raise InputError("effective_at", f"must be at least {notice_ms / 1000:g} s from now "
                         "(users are told in advance)")
    if eff_ms > 4_102_444_800_000:
        raise InputError("effective_at", "must be before 2100")
    instance = model_class(model)(body.params)  # validates: InputError -> 422
    validate_live_path(instance.params)  # the live path's [apc] tables too
    if model == container.settings.engine_model:
        from marginproof.engine.core import MarginEngine

        MarginEngine(instance)  # the engine must accept it too
    change = container.repo.record_params_change(model, instance.params_hash,
                                                 dict(instance.params),
                                                 f"{principal.label or principal.key_id}",
                                                 eff_ms)
    for r in container.runners:
        r.wake.set()
    container.announce({"type": "params_scheduled", "model": model,
                        "params_hash": instance.params_hash, "effective_at_ms": eff_ms,
                        "changed_by": change.changed_by, "log_seq": change.log_seq})
    return _out(change)
