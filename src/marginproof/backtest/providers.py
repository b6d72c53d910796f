"""Margin providers: "margin of every book on one date, given the history up to that date".

A provider gets the market path **truncated at the as-of row** (it cannot see later data) and
the day's books; it returns margins (and VaR/ES and scenario losses when the model has them).

* :class:`ModelProvider` wraps any registry model (``model.margin(portfolio, snapshot)`` per
  book); history-driven models must be built on the same history (their as-of day is the day of
  the snapshot, ``asof_date(snapshot.timestamp)``).
* :class:`GridBatchProvider` is the fast path of the ``grid`` model (fused batch kernel of
  :mod:`marginproof.models.batch`), identical to ``GridModel.margin`` per book.
* :class:`EwmaVarProvider` is the reference model of the backtest tests: one-factor
  parametric-normal EWMA scenarios, fully revalued.
* :class:`ConstantProvider` posts a fixed multiple of gross notional (0 = no margin, inf =
  infinite margin): the extreme models of the property tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import stats
from scipy.sparse import csr_matrix

from marginproof.backtest.market import MarketPath
from marginproof.backtest.portfolios import DayBooks, b76_price_delta
from marginproof.errors import InputError
from marginproof.models.base import MarginModel
from marginproof.risk.ewma import N_INIT, RISKMETRICS_LAMBDA, ewma_sigma
from marginproof.risk.measures import expected_shortfall

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class DayMargins:
    """Margins of the day's books, shape (n_portfolios,), NaN for inactive books.

    ``var``/``es`` are the model's portfolio VaR and ES when it reports them; ``scenario_losses``
    (n_scenarios, n_portfolios) its loss distribution (for the Du-Escanciano test).
    ``components`` are the model's additive margin components (USD, each shape
    (n_portfolios,), summing to ``margin``) and ``binding`` the index into ``binding_terms``
    of the term that set the requirement before add-ons (``dynamic`` only). ``levels`` are the
    raw terms the requirement is built from (``dynamic``: ``stressed``, the measure on the
    stressed periods, NaN when none has ended; ``floor_10y``; ``stress_loss``, the worst stress
    loss; ``var_es_level``, the core VaR at the ES level), what ``marginproof calibrate``
    recombines under other parameters without re-running the scenarios.
    """

    margin: FloatArray
    var: FloatArray | None = None
    es: FloatArray | None = None
    scenario_losses: FloatArray | None = None
    maintenance: FloatArray | None = None
    components: Mapping[str, FloatArray] | None = None
    binding: NDArray[np.int8] | None = None
    binding_terms: tuple[str, ...] = ()
    levels: Mapping[str, FloatArray] | None = None


class MarginProvider(Protocol):
    """Anything that margins a day's books from the history up to that day."""

    @property
    def name(self) -> str: ...

    def day_margins(self, history: MarketPath, books: DayBooks) -> DayMargins: ...


def _nan(n: int) -> FloatArray:
    return np.full(n, np.nan)


class ModelProvider:
    """Any :class:`~marginproof.models.base.MarginModel`, one ``margin()`` call per book.

    Parameters
    ----------
    model : MarginModel
    name : str, optional
        Label in the results (default the model name).
    keep_scenarios : bool
        Keep each book's scenario losses (for Du-Escanciano); costs memory.
    """

    def __init__(self, model: MarginModel, name: str | None = None,
                 keep_scenarios: bool = False) -> None:
        self.model = model
        self._name = name or model.name
        self.keep_scenarios = keep_scenarios
        self.skipped = 0

    @property
    def name(self) -> str:
        return self._name

    def day_margins(self, history: MarketPath, books: DayBooks) -> DayMargins:
        n = books.n_portfolios
        margin, var, es, mm = _nan(n), _nan(n), _nan(n), _nan(n)
        losses: dict[int, FloatArray] = {}
        for k in (int(x) for x in np.flatnonzero(books.active)):
            legs = np.flatnonzero(books.portfolio_idx == k)
            snap = books.snapshot(history, legs)
            try:
                res = self.model.margin(books.portfolio(int(k)), snap)
            except InputError:
                # the model refuses this book today (e.g. too little history): not evaluated
                self.skipped += 1
                continue
            margin[k] = res.initial_margin
            mm[k] = res.maintenance_margin
            pm = res.details.get("portfolio_measures") if res.details else None
            if isinstance(pm, Mapping):
                v = [x for key, x in pm.items() if str(key).startswith("var_")]
                e = [x for key, x in pm.items() if str(key).startswith("es_")]
                if v and e:
                    var[k], es[k] = float(v[0]), float(e[0])
            if self.keep_scenarios and res.scenario_pnl.shape[0]:
                losses[int(k)] = -res.scenario_pnl.sum(axis=1)
        scen = None
        if losses:
            m = max(len(x) for x in losses.values())
            scen = np.full((m, n), np.nan)
            for k, x in losses.items():
                scen[: len(x), k] = x
        has = bool(np.any(np.isfinite(var)))
        return DayMargins(margin, var if has else None, es if has else None, scen, mm)


class GridBatchProvider:
    """The ``grid`` model through the batch kernel (same numbers as ``GridModel.margin``)."""

    def __init__(self, model: Any) -> None:
        from marginproof.models.grid import GridModel

        if not isinstance(model, GridModel):
            raise InputError("model", "GridBatchProvider needs a GridModel")
        self.model = model

    @property
    def name(self) -> str:
        return str(self.model.name)

    def day_margins(self, history: MarketPath, books: DayBooks) -> DayMargins:
        from marginproof.instruments.resolved import resolve
        from marginproof.models.batch import CsrBook, grid_margin_batch

        n = books.n_portfolios
        act_legs = np.flatnonzero(books.active[books.portfolio_idx])
        out = _nan(n)
        if act_legs.size == 0:
            return DayMargins(out)
        names = [books.name(int(j)) for j in act_legs]
        uniq: dict[str, int] = {}
        inst_idx = np.array([uniq.setdefault(nm, len(uniq)) for nm in names], np.int32)
        first = {nm: int(j) for nm, j in zip(names, act_legs, strict=True)}
        from marginproof.instruments.portfolio import Portfolio, Position

        union = Portfolio(tuple(Position(books.instrument(first[nm]), 1.0) for nm in uniq))
        snap = books.snapshot(history, np.array([first[nm] for nm in uniq], np.int64))
        rb = resolve(union, snap)
        und_of_inst = rb.underlying_idx
        csr = CsrBook.from_positions(books.portfolio_idx[act_legs].astype(np.int64), inst_idx,
                                     books.units[act_legs], und_of_inst, n)
        res = grid_margin_batch(self.model, rb, csr)
        out[books.active] = res.initial_margin[books.active]
        mm = _nan(n)
        mm[books.active] = res.maintenance_margin[books.active]
        return DayMargins(out, maintenance=mm)


class ConstantProvider:
    """Margin = ``rate * gross notional`` (``rate = inf`` posts infinite margin)."""

    def __init__(self, rate: float, name: str | None = None) -> None:
        if math.isnan(rate) or rate < 0:
            raise InputError("rate", f"must be >= 0, got {rate!r}")
        self.rate = float(rate)
        self._name = name or f"constant-{rate:g}"

    @property
    def name(self) -> str:
        return self._name

    def day_margins(self, history: MarketPath, books: DayBooks) -> DayMargins:
        with np.errstate(invalid="ignore"):
            m = np.where(books.active, self.rate * books.gross_notional_usd, np.nan)
        if math.isinf(self.rate):
            m = np.where(books.active, np.inf, np.nan)
        return DayMargins(m)


class EwmaVarProvider:
    """Reference model: EWMA one-factor normal scenarios, full revaluation, VaR and ES.

    For each underlying ``sigma_next`` is the RiskMetrics EWMA forecast (``lam``, seeded with
    the first 30 squared returns) on the history up to the as-of bar (per bar: on an hourly
    path the horizon counts ``24 h`` bars). Scenario ``k`` moves every
    underlying by the log return ``sigma_u sqrt(h) z_k`` with ``z_k = Phi^-1((k - 1/2)/n)``
    (comonotonic: one common shock; implied vols unchanged); each leg is revalued in full
    (Black-76, ``T - h/365``). ``margin = VaR_conf_var`` of the book's scenario losses
    (``numpy.quantile``, linear) or ES (``measure="es"``), ES by the Acerbi-Tasche estimator.
    """

    def __init__(self, conf_var: float = 0.99, conf_es: float = 0.975, lam: float =
                 RISKMETRICS_LAMBDA, horizon_days: float = 1.0, n_scenarios: int = 200,
                 measure: str = "var", name: str = "ewma-var") -> None:
        if measure not in ("var", "es"):
            raise InputError("measure", "must be 'var' or 'es'")
        self.conf_var, self.conf_es, self.lam = float(conf_var), float(conf_es), float(lam)
        self.horizon_days = float(horizon_days)
        self.z = stats.norm.ppf((np.arange(int(n_scenarios)) + 0.5) / int(n_scenarios))
        self.measure = measure
        self._name = name
        self._sigma_cache: dict[tuple[int, int, float], float] = {}

    @property
    def name(self) -> str:
        return self._name

    def sigma_next(self, history: MarketPath, col: int) -> float:
        """Daily EWMA vol forecast for the day after the last row (NaN if too short)."""
        c = history.closes[:, col]
        key = (col, len(history), float(c[-1]) if len(c) else math.nan)
        if key not in self._sigma_cache:
            ok = c[np.isfinite(c)]
            if ok.shape[0] < N_INIT + 1:
                return math.nan
            r = np.log(ok[1:] / ok[:-1])
            self._sigma_cache[key] = float(ewma_sigma(r, self.lam, N_INIT)[-1])
        return self._sigma_cache[key]

    def scenario_losses(self, history: MarketPath, books: DayBooks) -> FloatArray:
        """Loss of every book in every scenario, shape (n_scenarios, n_portfolios)."""
        i = len(history) - 1
        n_u = len(history.underlyings)
        sig = np.array([self.sigma_next(history, c) for c in range(n_u)])
        h = self.horizon_days
        bars_per_day = float(np.timedelta64(1, "D") / history.bar)  # hourly paths: 24
        r = self.z[:, None] * (sig * math.sqrt(h * bars_per_day))[None, :]  # (n_scen, n_und)
        s0 = history.closes[i, books.und_col]
        legs_r = r[:, books.und_col]  # (n_scen, n_legs)
        s1 = s0[None, :] * np.exp(legs_r)
        v1 = s1.copy()
        opt = books.is_option & books.active[books.portfolio_idx]
        v0 = s0.copy()
        if opt.any():
            now = np.datetime64(history.known_at(i).replace(tzinfo=None), "s")
            t0 = (books.expiry[opt] - now).astype(np.float64) / (365.0 * 86400.0)
            t1 = np.maximum(t0 - h / 365.0, 1e-8)
            vol = history.iv[i, books.und_col[opt]]
            k, c = books.strike[opt], books.is_call[opt]
            v0[opt] = b76_price_delta(s0[opt], k, t0, vol, c)[0]
            n_s = legs_r.shape[0]
            shp = (n_s, k.size)
            v1[:, opt] = b76_price_delta(
                s1[:, opt].ravel(), np.broadcast_to(k, shp).ravel(),
                np.broadcast_to(t1, shp).ravel(), np.broadcast_to(vol, shp).ravel(),
                np.broadcast_to(c, shp).ravel())[0].reshape(shp)
        pnl_leg = books.coins[None, :] * (v1 - v0[None, :])
        pnl_leg = np.where(np.isfinite(pnl_leg), pnl_leg, 0.0)
        n_p = books.n_portfolios
        agg = csr_matrix((np.ones(books.n_legs), (books.portfolio_idx, np.arange(books.n_legs))),
                         shape=(n_p, books.n_legs))
        out = np.asarray((agg @ pnl_leg.T).T, dtype=np.float64)  # (n_scen, n_portfolios)
        return -out

    def day_margins(self, history: MarketPath, books: DayBooks) -> DayMargins:
        n = books.n_portfolios
        losses = self.scenario_losses(history, books)
        var = np.asarray(np.quantile(losses, self.conf_var, axis=0), dtype=np.float64)
        es = np.asarray(expected_shortfall(losses, self.conf_es), dtype=np.float64)
        act = books.active
        m = np.maximum(var if self.measure == "var" else es, 0.0)
        nanv = _nan(n)
        return DayMargins(np.where(act, m, nanv), np.where(act, var, nanv),
                          np.where(act, es, nanv), np.where(act[None, :], losses, np.nan))


ProviderFactory = Callable[[], MarginProvider]
