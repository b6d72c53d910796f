"""Hour-by-hour replay of a crash window through a margin model, and hypothetical shocks.

Accounts are the backtest book templates, instantiated at the first hour of the window (option
tenors are counted from the window's end so that nothing expires mid-replay) and held unchanged.
Each account posts collateral ``C = IM_0 (1 + cushion)`` with a seeded cushion drawn uniformly
in ``[cushion_min, cushion_max]`` (accounts keep some excess over the initial margin) and never
tops up (the worst case). Every hour ``t``:

* ``IM_t`` and ``MM_t`` from the provider on the history up to ``t`` (``MM_t = mm_fraction *
  IM_t`` when the provider has no maintenance margin);
* equity ``E_t = C + P&L_t`` (mark to market from the first hour);
* a **margin call** is open while ``E_t < IM_t``; its shortfall is ``IM_t - E_t``;
* the account is **liquidated** at the first hour with ``E_t < MM_t``, at that hour's close (no
  market impact here: see :mod:`marginproof.stress.cascade`); the loss beyond collateral is
  ``max(0, -E_t)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from marginproof.backtest.market import MarketPath, as_day
from marginproof.backtest.portfolios import BookTemplate, TemplateTable, instantiate
from marginproof.backtest.providers import MarginProvider
from marginproof.errors import InputError
from marginproof.stress.episodes import Shock

FloatArray = NDArray[np.float64]


def extend_tenors(templates: list[BookTemplate], extra_days: int) -> list[BookTemplate]:
    """Templates with every option tenor lengthened by ``extra_days``."""
    out = []
    for t in templates:
        legs = tuple(replace(leg, tenor_days=leg.tenor_days + int(extra_days))
                     if leg.kind in ("call", "put") else leg for leg in t.legs)
        out.append(BookTemplate(t.name, t.category, legs))
    return out


@dataclass(frozen=True)
class ReplayResult:
    """Hourly paths (tidy) and per-account outcomes of one model on one window."""

    model: str
    hourly: pd.DataFrame
    accounts: pd.DataFrame
    price: pd.DataFrame

    def totals(self) -> dict[str, Any]:
        a = self.accounts
        return {
            "model": self.model,
            "accounts": int(len(a)),
            "margin_calls": int(a["first_call"].notna().sum()),
            "liquidations": int(a["liquidated_at"].notna().sum()),
            "loss_beyond_collateral_usd": float(a["loss_beyond_collateral_usd"].sum()),
            "max_margin_increase_ratio": float(a["max_im_ratio"].max()) if len(a) else math.nan,
            "im_start_usd": float(a["im_start_usd"].sum()),
        }


def replay(path: MarketPath, templates: list[BookTemplate], provider: MarginProvider,
           start_row: int = 0, mm_fraction: float = 0.75, cushion: tuple[float, float] =
           (0.0, 1.0), seed: int = 0) -> ReplayResult:
    """Replay ``path`` (hourly) rows ``start_row..`` through ``provider`` (see module docstring).

    Parameters
    ----------
    path : MarketPath
        The window (hourly bars).
    templates : list of BookTemplate
    provider : MarginProvider
    start_row : int
        First hour (accounts open at its close).
    mm_fraction : float
        ``MM = mm_fraction * IM`` when the provider reports no maintenance margin.
    cushion : (float, float)
        Range of the collateral excess over ``IM_0``.
    seed : int
    """
    if not 0.0 < mm_fraction <= 1.0:
        raise InputError("mm_fraction", "must be in (0, 1]")
    n_rows = len(path)
    extra = int(math.ceil((n_rows - start_row) * path.bar / np.timedelta64(1, "D"))) + 1
    tpl = extend_tenors(templates, extra)
    table = TemplateTable.build(tpl, path.underlyings)
    books = instantiate(table, path, start_row)
    n = books.n_portfolios
    rng = np.random.default_rng(seed)
    cush = rng.uniform(cushion[0], cushion[1], n)
    dm0 = provider.day_margins(path.upto(start_row), books)
    im0 = dm0.margin
    collateral = im0 * (1.0 + cush)
    alive = books.active & np.isfinite(im0)
    first_call: list[Any] = [None] * n
    liq_at: list[Any] = [None] * n
    liq_loss = np.zeros(n)
    max_ratio = np.ones(n)
    rows = []
    for i in range(start_row, n_rows):
        if not path.available(i, path.underlyings):
            continue
        dm = provider.day_margins(path.upto(i), books) if i > start_row else dm0
        im = dm.margin
        mm = dm.maintenance if dm.maintenance is not None else mm_fraction * im
        pnl = books.pnl_usd(path, i) if i > start_row else np.zeros(n)
        eq = collateral + pnl
        t = str(path.times[i])
        for k in np.flatnonzero(alive):
            if im0[k] > 0 and np.isfinite(im[k]):
                max_ratio[k] = max(max_ratio[k], im[k] / im0[k])
            status = "ok"
            if eq[k] < im[k]:
                status = "call"
                if first_call[k] is None:
                    first_call[k] = t
            if eq[k] < mm[k]:
                status = "liquidated"
                liq_at[k] = t
                liq_loss[k] = max(0.0, -float(eq[k]))
                alive[k] = False
            rows.append((t, tpl[k].name, float(im[k]), float(mm[k]), float(eq[k]), status))
    hourly = pd.DataFrame(rows, columns=["time", "account", "im_usd", "mm_usd", "equity_usd",
                                         "status"])
    accounts = pd.DataFrame({
        "account": [t.name for t in tpl], "category": [t.category for t in tpl],
        "active": books.active, "im_start_usd": im0, "collateral_usd": collateral,
        "first_call": first_call, "liquidated_at": liq_at,
        "loss_beyond_collateral_usd": liq_loss, "max_im_ratio": max_ratio,
    })
    price = pd.DataFrame({"time": [str(x) for x in path.times[start_row:]],
                          **{u: path.closes[start_row:, j] for j, u in
                             enumerate(path.underlyings)},
                          **{f"{u}_iv": path.iv[start_row:, j] for j, u in
                             enumerate(path.underlyings)}})
    return ReplayResult(provider.name, hourly, accounts[accounts["active"]].reset_index(
        drop=True), price)


def shocked_path(path: MarketPath, row: int, shock: Shock, sigma_daily: FloatArray
                 ) -> MarketPath:
    """Two rows: ``row`` and the shocked market one bar later (``sigma_daily`` per underlying)."""
    c0 = path.closes[row]
    if shock.comonotonic_sigmas > 0:
        move = np.expm1(-shock.comonotonic_sigmas * sigma_daily * math.sqrt(shock.horizon_days))
    else:
        move = np.full(c0.shape, shock.spot_move)
    c = np.vstack([c0, c0 * (1.0 + move)])
    iv = np.vstack([path.iv[row], path.iv[row] * shock.vol_mult])
    times = np.array([path.times[row], path.times[row] + path.bar], "datetime64[s]")
    return MarketPath(times, path.bar, path.underlyings, c, iv,
                      np.vstack([path.iv_is_proxy[row]] * 2))


def hypothetical_shocks(path: MarketPath, templates: list[BookTemplate],
                        provider: MarginProvider, row: int, shocks: tuple[Shock, ...],
                        sigma_daily: FloatArray, cushion: tuple[float, float] = (0.0, 1.0),
                        seed: int = 0) -> pd.DataFrame:
    """Loss of every account under each shock against its margin and collateral at ``row``.

    Returns a tidy table: shock, account, im_usd, collateral_usd, loss_usd, loss_over_im,
    loss_beyond_collateral_usd.
    """
    table = TemplateTable.build(templates, path.underlyings)
    books = instantiate(table, path, row)
    im = provider.day_margins(path.upto(row), books).margin
    rng = np.random.default_rng(seed)
    coll = im * (1.0 + rng.uniform(cushion[0], cushion[1], books.n_portfolios))
    out = []
    for sh in shocks:
        sp = shocked_path(path, row, sh, sigma_daily)
        b = replace(books, row=0)
        loss = -b.pnl_usd(sp, 1)
        for k in np.flatnonzero(books.active):
            out.append({"shock": sh.id, "shock_name": sh.name, "account": templates[k].name,
                        "category": templates[k].category, "date": as_day(path.times[row]),
                        "im_usd": float(im[k]), "collateral_usd": float(coll[k]),
                        "loss_usd": float(loss[k]),
                        "loss_over_im": float(loss[k] / im[k]) if im[k] > 0 else math.nan,
                        "loss_beyond_collateral_usd": max(0.0, float(loss[k] - coll[k]))})
    return pd.DataFrame(out)


__all__ = ["ReplayResult", "extend_tenors", "hypothetical_shocks", "replay",
           "shocked_path"]
