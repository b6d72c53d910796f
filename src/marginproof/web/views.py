"""What the console shows, computed from engine state and margin results (no I/O here).

* :func:`utilisation` and :func:`rank_accounts`: the dashboard ranking (IM / equity, highest
  first; an account with a requirement and no positive equity ranks first);
* :func:`engine_snapshot` and :func:`snapshot_rows`: every account of one engine partition,
  copied from its arrays under the engine lock, turned into rows outside it;
* :func:`greeks_by_expiry`: position greeks summed per (underlying, expiry date);
* :func:`heatmaps`: risk matrices of a margin result in the ``details["risk_matrix"]`` layout
  (``{"title", "row_label", "rows", "columns", "values"}``), one per margin group;
* :func:`explain`: the drill-down / what-if explanation of a :class:`MarginResult`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.engine.events import STATUS_NAMES
from marginproof.instruments.names import parse_instrument
from marginproof.instruments.resolved import ResolvedBook
from marginproof.models.base import BaseMarginModel
from marginproof.models.grid import GridModel
from marginproof.models.result import GREEK_FIELDS, MarginResult, position_greeks_usd

STATUS_RANK = {"liquidation": 2, "margin_call": 1, "ok": 0}


def utilisation(initial_margin: float, equity: float) -> float:
    """``IM / equity``: 0 without a requirement, ``inf`` with a requirement and no equity."""
    if initial_margin <= 0.0:
        return 0.0
    if equity <= 0.0:
        return math.inf
    return initial_margin / equity


def _json_util(u: float) -> float | None:
    return None if math.isinf(u) else u


def rank_accounts(rows: Iterable[Mapping[str, Any]], limit: int) -> dict[str, Any]:
    """Rank margin rows by utilisation (highest first, ties by account id).

    Parameters
    ----------
    rows : iterable of dict
        Margin rows with ``account_id``, ``initial_margin``, ``maintenance_margin``, ``equity``,
        ``status`` (and any other fields, passed through).
    limit : int
        Rows returned; ``counts`` and ``n_accounts`` cover every row.

    Returns
    -------
    dict
        ``{"n_accounts", "counts": {status: n}, "accounts": [row + utilisation,
        mm_utilisation]}``; utilisations are ``None`` where infinite (no equity).
    """
    keyed = []
    counts = dict.fromkeys(STATUS_NAMES, 0)
    for r in rows:
        u = utilisation(float(r["initial_margin"]), float(r["equity"]))
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
        keyed.append((u, r))
    keyed.sort(key=lambda kr: (-kr[0], str(kr[1]["account_id"])))
    out = []
    for u, r in keyed[:limit]:
        mu = utilisation(float(r["maintenance_margin"]), float(r["equity"]))
        out.append({**r, "utilisation": _json_util(u), "mm_utilisation": _json_util(mu)})
    return {"n_accounts": len(keyed), "counts": counts, "accounts": out}


def engine_snapshot(engine: Any) -> dict[str, Any]:
    """Copies of one :class:`MarginEngine`'s per-account arrays (take it under the engine's
    lock: a few array copies, so the engine waits microseconds, not a Python loop)."""
    snap: dict[str, Any] = engine.snapshot_arrays()
    return snap


def snapshot_rows(snap: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Margin rows of an :func:`engine_snapshot` (status and binding as
    ``MarginEngine.account_margin`` derives them; labels are left to :func:`normalize_row`)."""
    im, mm, eq = snap["im"], snap["mm"], snap["equity"]
    status = np.where(eq < mm, 2, np.where(eq < im, 1, 0))
    groups = snap["groups"]
    rows = []
    for i in np.flatnonzero(snap["computed"]).tolist():
        g = int(snap["binding_group"][i])
        und: str | None = groups[g] if g >= 0 else None
        j: int | None = int(snap["binding_scenario"][i]) if g >= 0 else None
        rows.append({
            "account_id": snap["ids"][i], "seq": int(snap["seq"][i]),
            "market_ts_ms": int(snap["market_ts"][i]), "model": snap["model"],
            "params_hash": snap["params_hash"], "initial_margin": float(im[i]),
            "maintenance_margin": float(mm[i]), "equity": float(eq[i]),
            "status": STATUS_NAMES[int(status[i])], "held": bool(snap["held"][i]),
            "held_reason": (snap.get("held_reasons", {}).get(i) or "held")
            if snap["held"][i] else None,
            "binding_underlying": und, "binding_scenario": j,
            "components": {k: float(v[i]) for k, v in sorted(snap["components"].items())
                           if v[i] != 0.0},
        })
    return rows


def normalize_row(row: Mapping[str, Any], label: Any) -> dict[str, Any]:
    """A margin row (stored, batch or engine) with ``binding_*`` as None when there is no
    binding scenario and ``binding_label`` from ``label(underlying, j)``."""
    out = dict(row)
    if "binding_label" in out and out["binding_label"] is not None:
        return out
    und = out.get("binding_underlying") or None
    j = out.get("binding_scenario")
    if und is None or j is None or int(j) < 0:
        und, j = None, None
    out["binding_underlying"], out["binding_scenario"] = und, j
    out["binding_label"] = None if und is None else str(label(und, int(j)))  # type: ignore[arg-type]
    return out


def greeks_by_expiry(book: ResolvedBook) -> list[dict[str, Any]]:
    """Greeks summed per (underlying, expiry date), USD terms (coin delta alongside).

    Expiry is the ISO date of futures and options, ``"perpetual"`` or ``"spot"`` otherwise.
    Rows are sorted by underlying, then undated contracts, then expiry.
    """
    if len(book) == 0:
        return []
    g = position_greeks_usd(book)  # (7, n_positions)
    cells: dict[tuple[str, str], NDArray[np.float64]] = {}
    for i in range(len(book)):
        und = book.underlyings[int(book.underlying_idx[i])]
        exp = book.expiries[i]
        label = exp.date().isoformat() if exp is not None else (
            "perpetual" if int(book.kind[i]) == 2 else "spot")
        cells[(und, label)] = cells.get((und, label), np.zeros(7)) + g[:, i]
    out = []
    for (und, label), v in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1][0].isdigit(),
                                                                 kv[0][1])):
        out.append({"underlying": und, "expiry": label,
                    **{f: float(x) for f, x in zip(GREEK_FIELDS, v, strict=True)}})
    return out


def _underlying_of(name: str) -> str:
    try:
        return parse_instrument(name).underlying
    except Exception:  # noqa: BLE001 - a preset's synthetic position name
        return "other"


def _grid_heatmaps(result: MarginResult, model: GridModel) -> list[dict[str, Any]]:
    unit, shocks = model.scenario_axes()
    ns = len(shocks)
    n_scen = len(unit) * ns
    pnl = np.asarray(result.scenario_pnl)
    if pnl.shape[0] != n_scen or pnl.shape[1] == 0:
        return []
    unds = [_underlying_of(n) for n in result.position_names]
    out = []
    for w in result.worst_scenarios:
        mask = (np.ones(len(unds), bool) if w.group == "portfolio"
                else np.array([u == w.group for u in unds]))
        total = pnl[:, mask].sum(axis=1).reshape(len(unit), ns)
        if w.group == "portfolio":
            rows = [f"{u:+.0%} of range" for u in unit]
        else:
            pr = model.price_range(w.group)
            rows = [f"{u * pr:+.1%}" for u in unit]
        out.append({"title": f"{w.group}: P&L by price move and vol shock (USD)",
                    "row_label": f"{w.group} move", "rows": rows,
                    "columns": [f"vol {s}" for s in shocks],
                    "values": total.tolist(), "group": w.group,
                    "binding": {"row": w.index // ns, "column": w.index % ns,
                                "label": w.label, "loss": float(w.loss)}})
    return out


def _worst_table(result: MarginResult, n_rows: int = 12) -> list[dict[str, Any]]:
    pnl = np.asarray(result.scenario_pnl)
    if pnl.ndim != 2 or pnl.shape[0] == 0 or pnl.shape[1] == 0:
        return []
    unds = [_underlying_of(n) for n in result.position_names]
    groups = sorted(set(unds))
    total = pnl.sum(axis=1)
    order = np.argsort(total, kind="stable")[:n_rows]
    cols = [f"P&L {u}" for u in groups] + ["P&L total"]
    masks = [np.array([x == u for x in unds]) for u in groups]
    values = [[float(pnl[j, m].sum()) for m in masks] + [float(total[j])] for j in order]
    j0 = int(order[0])
    binding = {"row": 0, "column": len(cols) - 1, "label": result.scenario_labels[j0],
               "loss": max(0.0, -float(total[j0]))}
    return [{"title": f"{len(order)} worst scenarios (USD P&L)", "row_label": "scenario",
             "rows": [result.scenario_labels[j] for j in order], "columns": cols,
             "values": values, "group": "portfolio", "binding": binding}]


def heatmaps(result: MarginResult, model: BaseMarginModel) -> list[dict[str, Any]]:
    """Risk matrices to draw as heat maps (cells are P&L, gains positive).

    The model's own ``details["risk_matrix"]`` when it has one; for the grid model, one
    price-move x vol-shock matrix per margin group with the binding cell marked; otherwise the
    worst scenarios of ``scenario_pnl`` by underlying. Empty for table models.
    """
    rm = result.details.get("risk_matrix")
    if isinstance(rm, Mapping) and rm.get("values"):
        return [{"title": str(rm.get("title", "risk matrix")),
                 "row_label": str(rm.get("row_label", "")), "rows": [str(r) for r in rm["rows"]],
                 "columns": [str(c) for c in rm["columns"]],
                 "values": [[_finite(x) for x in row] for row in rm["values"]],
                 "group": "portfolio", "binding": None}]
    if isinstance(model, GridModel):
        return _grid_heatmaps(result, model)
    return _worst_table(result)


def _finite(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def components_table(components: Mapping[str, float]) -> list[dict[str, Any]]:
    """``[{"name", "group", "value"}]``: ``scenario_loss:BTC`` splits into name and group."""
    out = []
    for k, v in components.items():
        name, _, group = k.partition(":")
        out.append({"name": name, "group": group or None, "value": float(v)})
    return out


def explain(result: MarginResult, model: BaseMarginModel, book: ResolvedBook | None,
            positions: Mapping[str, float]) -> dict[str, Any]:
    """Everything the drill-down and the what-if panel show for one margin result."""
    ws = result.worst_scenario
    return {
        "model": result.model, "params_hash": result.params_hash,
        "market_timestamp": result.market_timestamp.isoformat(),
        "currency": result.currency, "initial_margin": float(result.initial_margin),
        "maintenance_margin": float(result.maintenance_margin),
        "positions": dict(positions),
        "components": components_table(result.components),
        "binding": None if ws is None else {"label": ws.label, "index": ws.index,
                                             "loss": float(ws.loss), "group": ws.group},
        "worst_scenarios": [{"label": w.label, "index": w.index, "loss": float(w.loss),
                             "group": w.group} for w in result.worst_scenarios],
        "contributions": {n: float(c) for n, c in zip(result.position_names,
                                                      result.contributions, strict=True)},
        "greeks": greeks_by_expiry(book) if book is not None else [],
        "greeks_by_underlying": result.greeks.by_underlying(),
        "heatmaps": heatmaps(result, model),
    }
