"""Backtest of the forecast on shipped hourly history: predicted P(call within 24 h) vs realised.

At each *origin* (an hour of the shipped hourly BTC/ETH path) every backtest portfolio template
(:mod:`marginproof.backtest.portfolios`) is instantiated at that hour's close and margined with
the model; the forecast is run once with no collateral (``keep_paths``). Because USDC carries
no haircut, equity at every path and step is linear in a USDC balance ``C``, so the predicted
probability of a call for *each* collateral level of the grid ``equity now = f x IM now`` is read
off the same paths (``eq + C < IM``, cumulative over the steps).

Realised: the same instruments are held over the next ``horizon`` hours of the path; at each
hour ``h`` the book is margined by ``model.margin`` on that hour's market (index closes,
forwards at the close, smile-aware vols from the path) and its equity is the forecast's equity
now plus the realised P&L of the held legs (``DayBooks.pnl_usd``: options Black-76 with F = S,
delta-one at the index). A call is realised when equity < IM at some hour 1..horizon.

Scores over (origin, book, level) triples: Brier score (and that of the constant base-rate
forecast, for the skill), a reliability table (bins of predicted probability: mean predicted,
realised frequency with a 95 % Wilson interval) and the share of realised calls that the
forecast warned of (``p >= warn_threshold``) at the origin, i.e. at least one hour before the
first hour in call. Limits (``docs/models/forecast.md``): the triples are not independent (one
origin's books share the market path, a book's levels are nested), no funding is simulated or
realised, and the realised IV is the path's (BTC DVOL hourly; ETH a scaled daily level).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from marginproof.backtest.market import MarketPath
from marginproof.backtest.portfolios import TemplateTable, instantiate, portfolio_set
from marginproof.errors import InputError
from marginproof.forecast.api import forecast
from marginproof.forecast.config import ForecastConfig

FloatArray = NDArray[np.float64]
LEVELS = (1.02, 1.05, 1.1, 1.2, 1.35, 1.6)
BINS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)


@dataclass(frozen=True)
class ForecastBacktestResult:
    """Per-triple records and the scores (see module docstring)."""

    records: pd.DataFrame
    brier: float
    brier_base_rate: float
    base_rate: float
    reliability: pd.DataFrame
    n_calls: int
    warned_share: float
    warn_threshold: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def brier_skill(self) -> float:
        return 1.0 - self.brier / self.brier_base_rate if self.brier_base_rate > 0 else math.nan

    def summary(self) -> dict[str, Any]:
        return {"n_forecasts": int(len(self.records)), "n_calls": self.n_calls,
                "base_rate": self.base_rate, "brier": self.brier,
                "brier_base_rate": self.brier_base_rate, "brier_skill": self.brier_skill,
                "warned_share": self.warned_share, "warn_threshold": self.warn_threshold,
                "mean_predicted": float(self.records["p"].mean()) if len(self.records)
                else math.nan, **self.info}


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion ``k / n``."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    d = 1.0 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def reliability_table(p: FloatArray, o: NDArray[np.bool_], bins: Sequence[float] = BINS
                      ) -> pd.DataFrame:
    """Per bin of predicted probability: count, mean predicted, realised frequency, Wilson CI."""
    edges = np.asarray(bins, dtype=np.float64)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for b in range(len(edges) - 1):
        m = idx == b
        n = int(m.sum())
        k = int(o[m].sum())
        lo, hi = wilson(k, n)
        rows.append({"bin": f"[{edges[b]:g}, {edges[b + 1]:g}{']' if b == len(edges) - 2 else ')'}",
                     "n": n, "predicted": float(p[m].mean()) if n else math.nan,
                     "realised": k / n if n else math.nan, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def origins(path: MarketPath, every_hours: int, horizon_hours: int, first: int = 0
            ) -> list[int]:
    """Rows ``first, first + every, ...`` with the horizon's rows inside the path."""
    return list(range(first, len(path) - horizon_hours, every_hours))


def forecast_backtest(model: Any, path: MarketPath, rows: Sequence[int],
                      sets: Sequence[str] = ("singles", "hedged", "adversarial", "inverse"),
                      levels: Sequence[float] = LEVELS, n_paths: int = 500,
                      horizon_hours: int = 24, seed: int = 0, warn_threshold: float = 0.05,
                      method: str = "auto") -> ForecastBacktestResult:
    """Forecast-vs-realised backtest (module docstring) at origin ``rows`` of an hourly path."""
    if path.bar != np.timedelta64(1, "h"):
        raise InputError("path", "the forecast backtest needs an hourly path")
    if not levels or min(levels) < 1.0:
        raise InputError("levels", "equity/IM levels must be >= 1 (the account starts ok)")
    templates = portfolio_set(tuple(sets), tuple(path.underlyings))
    table = TemplateTable.build(templates, path.underlyings)
    lv = np.asarray(levels, dtype=np.float64)
    recs: list[dict[str, Any]] = []
    skipped = 0
    for o_i, i in enumerate(rows):
        if i + horizon_hours >= len(path):
            raise InputError("rows", f"origin {i} + horizon beyond the path")
        upto = path.upto(i)
        books = instantiate(table, upto, i)
        pnl_all = np.array([books.pnl_usd(path, i + h) for h in range(1, horizon_hours + 1)])
        for k in np.flatnonzero(books.active):
            legs = np.flatnonzero(books.portfolio_idx == k)
            if not all(path.available(i + h, [books.underlyings[int(c)]
                                              for c in books.und_col[legs]])
                       for h in range(horizon_hours + 1)):
                skipped += 1
                continue
            pf = books.portfolio(int(k))
            mkt = books.snapshot(upto, legs)
            cfg = ForecastConfig(horizon_hours=float(horizon_hours), n_paths=n_paths,
                                 seed=seed + o_i, method=method, call_levels=False,
                                 warn_threshold=warn_threshold)
            r = forecast(model, pf, mkt, cfg, collateral={"USDC": 0.0}, keep_paths=True)
            im, eq = r.details["paths"]["im"], r.details["paths"]["equity"]
            pnl = pnl_all[:, k]
            im_real = np.array([model.margin(pf, books.snapshot(path.upto(i + h), legs))
                                .initial_margin for h in range(1, horizon_hours + 1)])
            if not np.all(np.isfinite(pnl)):
                skipped += 1
                continue
            for f in lv:
                c = f * r.im0 - r.equity0
                pk = float(np.any(eq[:, 1:] + c < im[:, 1:], axis=1).mean())
                eq_real = f * r.im0 + pnl  # equity now (= f IM now) + realised P&L
                hit = np.flatnonzero(eq_real < im_real)
                recs.append({"origin": str(path.times[i]), "book": templates[int(k)].name,
                             "category": templates[int(k)].category, "level": float(f),
                             "im0": r.im0, "p": pk, "called": bool(hit.size),
                             "first_call_hour": int(hit[0] + 1) if hit.size else -1,
                             "warned": pk >= warn_threshold})
    df = pd.DataFrame(recs)
    if df.empty:
        raise InputError("rows", "no forecast could be backtested on these origins")
    p = df["p"].to_numpy(dtype=np.float64)
    o = df["called"].to_numpy(dtype=bool)
    base = float(o.mean())
    calls = df[df["called"]]
    return ForecastBacktestResult(
        records=df, brier=float(np.mean((p - o) ** 2)),
        brier_base_rate=float(np.mean((base - o) ** 2)), base_rate=base,
        reliability=reliability_table(p, o), n_calls=int(o.sum()),
        warned_share=float(calls["warned"].mean()) if len(calls) else math.nan,
        warn_threshold=warn_threshold,
        info={"model": model.name, "n_origins": len(rows), "n_paths": n_paths,
              "horizon_hours": horizon_hours, "levels": [float(x) for x in lv],
              "sets": list(sets), "first_origin": str(path.times[rows[0]]),
              "last_origin": str(path.times[rows[-1]]), "skipped_books": skipped,
              "mean_first_call_hour": float(calls["first_call_hour"].mean())
              if len(calls) else math.nan})
