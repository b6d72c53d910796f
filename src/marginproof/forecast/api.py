"""``forecast(model, portfolio, market) -> ForecastResult``: the next hours of an account.

Steps (``docs/models/forecast.md``): resolve the book; take the model's own factor dynamics
(:mod:`marginproof.forecast.dynamics`; the ``fhs`` reference for models without any); simulate
index and ATM-IV paths, vol updates at UTC rollovers and funding (:mod:`.paths`); at every step
revalue the positions and margin the book under the model at every path's market
(:mod:`.evaluators`, exact or by the disclosed lattice proxy; step 0 is ``model.margin``
itself); value the account's equity as the engine does, plus variation margin, option
settlements and funding since now; summarise (quantiles, call and liquidation probabilities
by step, ES of the excess at the horizon) and compute the call levels (:mod:`.levels`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.config.params import params_hash
from marginproof.errors import InputError
from marginproof.forecast.config import ForecastConfig
from marginproof.forecast.dynamics import FactorDynamics, history_dynamics, reference_dynamics
from marginproof.forecast.evaluators import (
    Evaluator,
    GenericEvaluator,
    LatticeSpec,
    make_evaluator,
)
from marginproof.forecast.levels import call_levels
from marginproof.forecast.paths import FactorPaths, simulate_paths
from marginproof.forecast.result import ForecastResult
from marginproof.forecast.states import (
    StepStates,
    collateral_value_usd,
    expiry_hours,
    positions_value_usd,
    settlement_usd,
)
from marginproof.instruments.portfolio import CollateralPolicy, Portfolio
from marginproof.instruments.resolved import ResolvedBook, resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.risk.history import asof_date
from marginproof.risk.measures import expected_shortfall

FloatArray = NDArray[np.float64]
_EPS = 1e-9


def model_dynamics(model: Any, underlyings: tuple[str, ...], market: MarketSnapshot
                   ) -> FactorDynamics:
    """The model's own dynamics, or the ``fhs`` reference for models without any."""
    from marginproof.models._history import ScenarioRiskMixin

    asof = asof_date(market.timestamp)
    if isinstance(model, ScenarioRiskMixin):
        return history_dynamics(model, underlyings, asof)
    return reference_dynamics(underlyings, asof)


def status_of(equity: float, im: float, mm: float) -> str:
    """The engine's status rule."""
    return "liquidation" if equity < mm else "margin_call" if equity < im else "ok"


class _Account:
    """Equity of the account at states (collateral + positions + cash since now)."""

    def __init__(self, book: ResolvedBook, market: MarketSnapshot,
                 collateral: Mapping[str, float], haircuts: Mapping[str, float]) -> None:
        self.book = book
        self.market = market
        self.collateral = dict(collateral)
        self.haircuts = dict(haircuts)

    def equity(self, st: StepStates) -> FloatArray:
        c = collateral_value_usd(self.collateral, self.haircuts, self.market,
                                 self.book.underlyings, st.x)
        return np.asarray(c + positions_value_usd(self.book, st), dtype=np.float64)


def _step_states(paths: FactorPaths, k: int, book: ResolvedBook, alive: NDArray[np.bool_],
                 rate0: FloatArray) -> StepStates:
    x = np.exp(paths.log_spot[:, k])
    y = np.exp(paths.log_iv[:, k])
    n_p = paths.n_paths
    funding = np.full((n_p, len(book)), np.nan)
    if paths.funding_hours.shape[0]:
        f_last = int(np.searchsorted(paths.funding_hours, paths.hours[k] + _EPS)) - 1
    else:
        f_last = -1
    for j in np.flatnonzero(np.isfinite(rate0)):
        u = int(book.underlying_idx[j])
        ch = paths.funding_rate_change[:, f_last, u] if f_last >= 0 else np.zeros(n_p)
        funding[:, j] = rate0[j] + ch
    return StepStates(float(paths.hours[k]), x, y, paths.ret_scale[:, k], paths.iv_scale[:, k],
                      paths.sigma[:, k], funding, alive)


def resolve_method(config: ForecastConfig, evaluator: Evaluator, n_states: int) -> str:
    if isinstance(evaluator, GenericEvaluator):
        return "exact"
    if config.method == "auto":
        return "proxy" if evaluator.work(n_states) > config.auto_proxy_above else "exact"
    return config.method


def forecast_hash(model: Any, portfolio: Portfolio, market: MarketSnapshot,
                  collateral: Mapping[str, float], config: ForecastConfig, dynamics: str
                  ) -> str:
    return params_hash({
        "model": model.name, "params_hash": model.params_hash, "config": config.to_dict(),
        "dynamics": dynamics,
        "positions": [[p.instrument.name, p.quantity] for p in portfolio.positions],
        "collateral": {k: float(v) for k, v in sorted(collateral.items())},
        "market": {"timestamp": market.timestamp.isoformat(),
                   "index": dict(sorted(market.index_prices.items())),
                   "marks": dict(sorted(market.mark_prices.items())),
                   "vols": dict(sorted(market.implied_vols.items())),
                   "funding": dict(sorted(market.funding_rates.items())),
                   "forwards": {u: {e.isoformat(): f for e, f in sorted(c.items())}
                                for u, c in sorted(market.forwards.items())}}})


def forecast(model: Any, portfolio: Portfolio, market: MarketSnapshot,
             config: ForecastConfig | None = None, *,
             collateral: Mapping[str, float] | None = None,
             haircuts: Mapping[str, float] | None = None,
             dynamics: FactorDynamics | None = None,
             lattice: LatticeSpec | None = None,
             keep_paths: bool = False) -> ForecastResult:
    """Forecast the margin, equity and status of an account (see module docstring).

    Parameters
    ----------
    model : MarginModel
        Any registry model; ``grid``, ``fhs``, ``mc`` and ``dynamic`` run on batch twins,
        others call ``model.margin`` per path and step.
    portfolio : Portfolio
    market : MarketSnapshot
    config : ForecastConfig, optional
    collateral : Mapping[str, float], optional
        Balances (default: ``portfolio.collateral``).
    haircuts : Mapping[str, float], optional
        Collateral haircuts (default: the engine's, :class:`CollateralPolicy`).
    dynamics : FactorDynamics, optional
        Override the simulated dynamics (tests use :func:`gaussian_dynamics`).
    lattice : LatticeSpec, optional
        Spacing of the proxy's value lattices.
    keep_paths : bool
        Keep the per-path arrays in ``details["paths"]`` (backtests, checks).
    """
    cfg = config or ForecastConfig()
    coll = dict(portfolio.collateral if collateral is None else collateral)
    hc = dict(CollateralPolicy().haircuts if haircuts is None else haircuts)
    for a, v in coll.items():
        if not math.isfinite(float(v)):
            raise InputError(f"collateral.{a}", f"must be finite, got {v!r}")
    book = resolve(portfolio, market)
    if len(book) == 0:
        raise InputError("positions", "the account has no positions to forecast")
    r0 = model.margin(portfolio, market)
    if r0.currency != "USD":
        raise InputError("model", f"{model.name} margins in {r0.currency}; the forecast "
                         "compares margin with USD equity")
    unds = book.underlyings
    dyn = (dynamics if dynamics is not None else model_dynamics(model, unds, market)
           ).subset(unds)
    spot0 = np.array([market.index(u) for u in unds])
    exp_h = expiry_hours(book)
    H = float(cfg.horizon_hours)
    paths = simulate_paths(dyn, market.timestamp, H, float(cfg.step_hours), cfg.n_paths,
                           cfg.seed, [float(v) for v in spot0],
                           [float(e) for e in exp_h if e <= H + _EPS])
    ev = make_evaluator(model, portfolio, book, market, lattice)
    method = resolve_method(cfg, ev, cfg.n_paths * cfg.n_steps)
    acct = _Account(book, market, coll, hc)
    rate0 = np.array([float(market.funding_rates[book.names[j]])
                      if book.kind[j] == 2 and book.names[j] in market.funding_rates
                      else np.nan for j in range(len(book))])
    n_p, n_s = cfg.n_paths, cfg.n_steps
    im = np.zeros((n_p, n_s + 1))
    mm = np.zeros((n_p, n_s + 1))
    eq = np.zeros((n_p, n_s + 1))
    cash = np.zeros(n_p)
    settled: set[int] = set()
    fund_done = 0
    fund_scale = np.where(book.is_inverse, book.index / book.forward, 1.0)
    notes: list[str] = []
    for k in range(n_s + 1):
        h = float(paths.hours[k])
        alive = exp_h > h + _EPS
        for i in np.flatnonzero(~alive):
            if int(i) in settled:
                continue
            kk = int(np.searchsorted(paths.knot_hours, round(float(exp_h[i]), 9) - 1e-7))
            kk = min(kk, paths.knot_hours.shape[0] - 1)
            x_e = np.exp(paths.knot_log_spot[:, kk, int(book.underlying_idx[i])])
            cash += settlement_usd(book, int(i), x_e)
            settled.add(int(i))
            notes.append(f"{book.names[i]} expires within the horizon: settled at intrinsic "
                         "value into cash")
        while fund_done < paths.funding_hours.shape[0] and \
                paths.funding_hours[fund_done] <= h + _EPS:
            f = fund_done
            for j in np.flatnonzero(np.isfinite(rate0)):
                if exp_h[j] <= paths.funding_hours[f]:
                    continue
                u = int(book.underlying_idx[j])
                rate = rate0[j] + paths.funding_rate_change[:, f, u]
                if book.is_inverse[j]:
                    cash -= book.quantity[j] * rate * fund_scale[j]
                else:
                    fwd = book.forward[j] * np.exp(paths.funding_log_spot[:, f, u])
                    cash -= book.quantity[j] * fwd * rate
            fund_done += 1
        st = _step_states(paths, k, book, alive, rate0)
        if k == 0:
            im[:, 0], mm[:, 0] = r0.initial_margin, r0.maintenance_margin
        else:
            im[:, k], mm[:, k] = ev.margins(st, method)
        eq[:, k] = acct.equity(st) + cash
    equity0 = float(eq[0, 0])
    excess = eq - mm
    in_call = eq < im
    in_liq = eq < mm
    p_call_by = np.maximum.accumulate(in_call, axis=1).mean(axis=0)
    p_liq_by = np.maximum.accumulate(in_liq, axis=1).mean(axis=0)
    qs = cfg.quantiles
    es = -float(expected_shortfall(-excess[:, -1], cfg.es_conf)) if n_p * (
        1.0 - cfg.es_conf) >= 1.0 else float(excess[:, -1].min())
    levels: tuple[Any, ...] = ()
    if cfg.call_levels:
        def excess_fn(s: StepStates) -> tuple[FloatArray, FloatArray]:
            a, b = ev.margins(s, "exact")
            e = acct.equity(s)
            return e - a, e - b
        levels = call_levels(dyn, spot0, excess_fn, len(book))
    dyn_info = {"source": dyn.source, "underlyings": list(dyn.underlyings),
                "sigma_daily": {u: float(dyn.sigma[i]) for i, u in enumerate(unds)},
                "iv_sigma_daily": {u: float(dyn.sigma[len(unds) + i])
                                   for i, u in enumerate(unds)},
                "vol_updates": [u.kind for u in dyn.updates[:len(unds)]],
                "n_residuals": None if dyn.residuals is None else int(dyn.residuals.shape[0]),
                "rollovers_in_horizon": int(paths.rollovers[-1]),
                "vol_updates_at_rollover": bool(np.all(np.isfinite(dyn.last_close)))}
    details: dict[str, Any] = {
        "dynamics": dyn_info, "n_paths": n_p, "n_steps": n_s,
        "evaluator": type(ev).__name__, "collateral": coll, "haircuts": hc,
        "funding_simulated": [book.names[j] for j in np.flatnonzero(np.isfinite(rate0))],
        "notes": sorted(set(notes)), "config_hash": cfg.hash,
    }
    if keep_paths:
        details["paths"] = {"im": im, "mm": mm, "equity": eq, "factor_paths": paths}
    src = dyn.source
    return ForecastResult(
        model=model.name, params_hash=model.params_hash, market_timestamp=market.timestamp,
        seed=cfg.seed, config=cfg.to_dict(),
        forecast_hash=forecast_hash(model, portfolio, market, coll, cfg, src),
        dynamics=src, method=method, hours=paths.hours,
        times=tuple(market.timestamp + timedelta(hours=float(h)) for h in paths.hours),
        quantile_levels=qs,
        im_q=np.quantile(im, qs, axis=0), mm_q=np.quantile(mm, qs, axis=0),
        equity_q=np.quantile(eq, qs, axis=0), excess_q=np.quantile(excess, qs, axis=0),
        im_mean=im.mean(axis=0), equity_mean=eq.mean(axis=0),
        p_call_by=p_call_by, p_liquidation_by=p_liq_by, p_call_at=in_call.mean(axis=0),
        im0=float(r0.initial_margin), mm0=float(r0.maintenance_margin), equity0=equity0,
        status0=status_of(equity0, r0.initial_margin, r0.maintenance_margin),
        excess_es=es, es_conf=cfg.es_conf, call_levels=levels,
        warn=bool(p_call_by[-1] >= cfg.warn_threshold), details=details)
