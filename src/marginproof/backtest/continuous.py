"""Walk-forward backtest, incremental: appending a day updates the statistics in O(1) per book.

Each as-of row ``t`` (a UTC day): the day's books are instantiated at the close of ``t``; the
provider margins them from the history **truncated at t**; ``h`` rows later (the margin period
of risk) the books' realised P&L from the close of ``t`` to the close of ``t + h`` is known and
the day is *settled*: ``loss = -P&L``, ``exception = loss > margin``. Margins wait in a pending
queue until then.

:class:`StatsAccumulator` keeps, per book, exactly what the statistics need (counts,
transition counts, the last 250 indicators, ES-test sums, Du-Escanciano lag products, margin
extremes and the last 30 margins), so :meth:`ContinuousBacktest.update` with a path that has one
more day settles one more day without recomputing history, and gives the same statistics as a
full recomputation (tested).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.stats import chi2, norm

from marginproof.apc.tools import release_step
from marginproof.backtest import stats as bst
from marginproof.backtest.market import MarketPath, as_day
from marginproof.backtest.portfolios import BookTemplate, DayBooks, TemplateTable, instantiate
from marginproof.backtest.providers import DayMargins, MarginProvider
from marginproof.errors import InputError

FloatArray = NDArray[np.float64]
HORIZONS = (1, 5, 30)
ROLLING_DAYS = 250
DE_LAGS = 5


@dataclass(frozen=True)
class BacktestConfig:
    """Walk-forward settings.

    Attributes
    ----------
    horizon_days : int
        Margin period of risk in rows (days) over which the realised P&L is measured.
    alpha : float
        Tail probability of the exception tests (margin read as a ``1 - alpha`` VaR).
    es_alpha : float
        Tail probability of the ES tests (Acerbi-Szekely, Du-Escanciano).
    min_history_days : int
        First as-of row is at least this many rows into the path.
    release_buffer, rebuild_speed : float
        EMIR Art. 28(1)(a) buffer with release on each book's daily margin path
        (:func:`marginproof.apc.tools.release_step`): the posted (called) margin is tested;
        0 = the provider's margin as it is. Days a book is not evaluated carry its buffer over.
    """

    horizon_days: int = 1
    alpha: float = 0.01
    es_alpha: float = 0.025
    min_history_days: int = 250
    release_buffer: float = 0.0
    rebuild_speed: float = 0.0
    stride: int = 1

    def __post_init__(self) -> None:
        if int(self.horizon_days) < 1:
            raise InputError("horizon_days", "must be >= 1")
        if int(self.stride) < 1:
            raise InputError("stride", "must be >= 1")
        if not (0.0 <= self.release_buffer <= 1.0) or not (0.0 <= self.rebuild_speed <= 10.0):
            raise InputError("release_buffer", "release_buffer in [0, 1], rebuild_speed >= 0")
        bst._check_alpha(self.alpha)
        bst._check_alpha(self.es_alpha, "es_alpha")


class StatsAccumulator:
    """Per-book running backtest statistics (see module docstring), kept in arrays.

    Per book: counts, the four transition counts and the last indicator, ring buffers of the
    last 250 indicators, the last 5 Du-Escanciano terms and the last 30 margins, the ES-test
    sums, margin extremes and the largest n-day rises. :meth:`add` updates every book in a few
    vectorised steps (no per-book Python loop).
    """

    def __init__(self, n_books: int, alpha: float, es_alpha: float) -> None:
        self.alpha, self.es_alpha = float(alpha), float(es_alpha)
        n = int(n_books)
        self.n = n
        i64 = np.int64
        self.n_obs = np.zeros(n, i64)
        self.n_exc = np.zeros(n, i64)
        self.trans = np.zeros((n, 4), i64)  # n00 n01 n10 n11
        self.last = np.full(n, -1, i64)
        self.recent = np.zeros((n, ROLLING_DAYS), np.int8)
        self.recent_len = np.zeros(n, i64)
        self.recent_pos = np.zeros(n, i64)
        self.es_n = np.zeros(n, i64)
        self.es_n_exc = np.zeros(n, i64)
        self.es_sum_exc_ratio = np.zeros(n)
        self.de_n = np.zeros(n, i64)
        self.de_sum_h = np.zeros(n)
        self.de_sum_e2 = np.zeros(n)
        self.de_lag = np.zeros((n, DE_LAGS))
        self.de_recent = np.zeros((n, DE_LAGS))
        self.de_len = np.zeros(n, i64)
        self.de_pos = np.zeros(n, i64)
        self.m_n = np.zeros(n, i64)
        self.m_sum = np.zeros(n)
        self.m_sum_ratio = np.zeros(n)
        self.m_min = np.full(n, math.inf)
        self.m_max = np.full(n, -math.inf)
        self.m_recent = np.zeros((n, max(HORIZONS)))
        self.m_len = np.zeros(n, i64)
        self.m_pos = np.zeros(n, i64)
        self.inc_ratio = np.full((n, len(HORIZONS)), -math.inf)
        self.inc_abs = np.full((n, len(HORIZONS)), -math.inf)
        self.loss_max = np.full(n, -math.inf)
        self.shortfall_max = np.zeros(n)

    def add(self, margin: FloatArray, loss: FloatArray, gross: FloatArray,
            var: FloatArray | None = None, es: FloatArray | None = None,
            u: FloatArray | None = None) -> None:
        """Add one settled day, arrays of shape (n_books,); NaN entries are skipped."""
        m = np.asarray(margin, dtype=np.float64)
        lo = np.asarray(loss, dtype=np.float64)
        k = np.flatnonzero(~np.isnan(m) & ~np.isnan(lo))
        if k.size == 0:
            return
        mk, lk = m[k], lo[k]
        exc = (lk > mk).astype(np.int64)
        self.n_obs[k] += 1
        self.n_exc[k] += exc
        had = self.last[k] >= 0
        kk = k[had]
        np.add.at(self.trans, (kk, 2 * self.last[kk] + exc[had]), 1)
        self.last[k] = exc
        self.recent[k, self.recent_pos[k]] = exc
        self.recent_pos[k] = (self.recent_pos[k] + 1) % ROLLING_DAYS
        self.recent_len[k] = np.minimum(self.recent_len[k] + 1, ROLLING_DAYS)
        self.loss_max[k] = np.maximum(self.loss_max[k], lk)
        self.shortfall_max[k] = np.maximum(self.shortfall_max[k], lk - mk)
        if es is not None and var is not None:
            e = np.asarray(es, dtype=np.float64)[k]
            v = np.asarray(var, dtype=np.float64)[k]
            with np.errstate(invalid="ignore"):
                ok = (e > 0) & np.isfinite(v)
            ke = k[ok]
            self.es_n[ke] += 1
            hit = lk[ok] > v[ok]
            kh = ke[hit]
            self.es_n_exc[kh] += 1
            self.es_sum_exc_ratio[kh] += lk[ok][hit] / e[ok][hit]
        if u is not None:
            uu = np.asarray(u, dtype=np.float64)[k]
            ok = np.isfinite(uu)
            ku, x = k[ok], uu[ok]
            a = self.es_alpha
            h = np.where(x <= a, (a - x) / a, 0.0)
            ee = h - a / 2.0
            self.de_n[ku] += 1
            self.de_sum_h[ku] += h
            self.de_sum_e2[ku] += ee * ee
            for j in range(DE_LAGS):
                has = self.de_len[ku] > j
                idx = (self.de_pos[ku] - 1 - j) % DE_LAGS
                prev = self.de_recent[ku, idx]
                self.de_lag[ku, j] += np.where(has, ee * prev, 0.0)
            self.de_recent[ku, self.de_pos[ku]] = ee
            self.de_pos[ku] = (self.de_pos[ku] + 1) % DE_LAGS
            self.de_len[ku] = np.minimum(self.de_len[ku] + 1, DE_LAGS)
        fin = np.isfinite(mk)
        km, mm = k[fin], mk[fin]
        g = np.asarray(gross, dtype=np.float64)[km]
        self.m_n[km] += 1
        self.m_sum[km] += mm
        with np.errstate(invalid="ignore", divide="ignore"):
            self.m_sum_ratio[km] += np.where(g > 0, mm / np.where(g > 0, g, 1.0), 0.0)
        self.m_min[km] = np.minimum(self.m_min[km], mm)
        self.m_max[km] = np.maximum(self.m_max[km], mm)
        w = self.m_recent.shape[1]
        for j, n in enumerate(HORIZONS):
            has = self.m_len[km] >= n
            prev = self.m_recent[km, (self.m_pos[km] - n) % w]
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.where(has & (prev > 0), mm / np.where(prev > 0, prev, 1.0), -math.inf)
            self.inc_ratio[km, j] = np.maximum(self.inc_ratio[km, j], r)
            self.inc_abs[km, j] = np.maximum(self.inc_abs[km, j],
                                             np.where(has, mm - prev, -math.inf))
        self.m_recent[km, self.m_pos[km]] = mm
        self.m_pos[km] = (self.m_pos[km] + 1) % w
        self.m_len[km] = np.minimum(self.m_len[km] + 1, w)

    @staticmethod
    def _ring(buf: np.ndarray, length: int, pos: int) -> list[Any]:
        """Ring buffer contents, oldest first."""
        w = buf.shape[0]
        start = (pos - length) % w
        return [buf[(start + i) % w].item() for i in range(length)]

    def to_state(self) -> dict[str, Any]:
        """State as plain lists and dicts (persist a continuous backtest between restarts).

        One dict per book (the layout of the earlier per-book objects); untouched extremes
        are +-inf (Python's ``json`` writes them as ``Infinity``).
        """
        books = []
        for k in range(self.n):
            books.append({
                "n_obs": int(self.n_obs[k]), "n_exc": int(self.n_exc[k]),
                "trans": [int(x) for x in self.trans[k]], "last": int(self.last[k]),
                "recent": [int(x) for x in self._ring(self.recent[k], int(self.recent_len[k]),
                                                        int(self.recent_pos[k]))],
                "es_n": int(self.es_n[k]), "es_sum_exc_ratio": float(self.es_sum_exc_ratio[k]),
                "es_n_exc": int(self.es_n_exc[k]), "de_n": int(self.de_n[k]),
                "de_sum_h": float(self.de_sum_h[k]), "de_sum_e2": float(self.de_sum_e2[k]),
                "de_lag": [float(x) for x in self.de_lag[k]],
                "de_recent": [float(x) for x in self._ring(self.de_recent[k],
                                                           int(self.de_len[k]),
                                                           int(self.de_pos[k]))],
                "m_n": int(self.m_n[k]), "m_sum": float(self.m_sum[k]),
                "m_sum_ratio": float(self.m_sum_ratio[k]), "m_min": float(self.m_min[k]),
                "m_max": float(self.m_max[k]),
                "m_recent": [float(x) for x in self._ring(self.m_recent[k], int(self.m_len[k]),
                                                          int(self.m_pos[k]))],
                "inc_ratio": {str(n): float(self.inc_ratio[k, j])
                              for j, n in enumerate(HORIZONS)},
                "inc_abs": {str(n): float(self.inc_abs[k, j]) for j, n in enumerate(HORIZONS)},
                "loss_max": float(self.loss_max[k]),
                "shortfall_max": float(self.shortfall_max[k]),
            })
        return {"alpha": self.alpha, "es_alpha": self.es_alpha, "books": books}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> StatsAccumulator:
        """Rebuild from :meth:`to_state` output (exactly: the next ``add`` continues it)."""
        acc = cls(len(state["books"]), float(state["alpha"]), float(state["es_alpha"]))
        for k, d in enumerate(state["books"]):
            for name in ("n_obs", "n_exc", "last", "es_n", "es_n_exc", "de_n", "m_n"):
                getattr(acc, name)[k] = int(d[name])
            for name in ("es_sum_exc_ratio", "de_sum_h", "de_sum_e2", "m_sum", "m_sum_ratio",
                         "m_min", "m_max", "loss_max", "shortfall_max"):
                getattr(acc, name)[k] = float(d[name])
            acc.trans[k] = [int(x) for x in d["trans"]]
            acc.de_lag[k] = [float(x) for x in d["de_lag"]]
            for j, n in enumerate(HORIZONS):
                acc.inc_ratio[k, j] = float(d["inc_ratio"][str(n)])
                acc.inc_abs[k, j] = float(d["inc_abs"][str(n)])
            for buf, ln, ps, key in ((acc.recent, acc.recent_len, acc.recent_pos, "recent"),
                                     (acc.de_recent, acc.de_len, acc.de_pos, "de_recent"),
                                     (acc.m_recent, acc.m_len, acc.m_pos, "m_recent")):
                vals = list(d[key])[-buf.shape[1]:]
                buf[k, :len(vals)] = vals
                ln[k] = len(vals)
                ps[k] = len(vals) % buf.shape[1]
        return acc

    def book_stats(self, k: int) -> dict[str, Any]:
        """Statistics of book ``k`` (a flat dict; NaN where undefined)."""
        out: dict[str, Any] = {"n_obs": int(self.n_obs[k]), "n_exceptions": int(self.n_exc[k])}
        nan = math.nan
        if self.n_obs[k] == 0:
            return out
        T, x = int(self.n_obs[k]), int(self.n_exc[k])
        pof = bst.kupiec_pof(T, x, self.alpha)
        out.update(exception_rate=x / T, coverage_ratio=1.0 - x / T, kupiec_lr=pof.lr,
                   kupiec_p=pof.p_value)
        if T >= 2:
            ind = _ind_from_counts([int(v) for v in self.trans[k]], T)
            out.update(christoffersen_ind_lr=ind.lr, christoffersen_ind_p=ind.p_value,
                       christoffersen_cc_lr=pof.lr + ind.lr,
                       christoffersen_cc_p=float(chi2.sf(pof.lr + ind.lr, 2)))
        tl = bst.traffic_light(x, T, self.alpha)
        out.update(zone=tl.zone, zone_cumulative_probability=tl.cumulative_probability)
        n_r = int(self.recent_len[k])
        r_exc = int(self.recent[k].sum()) if n_r == ROLLING_DAYS else int(sum(
            self._ring(self.recent[k], n_r, int(self.recent_pos[k]))))
        if n_r >= ROLLING_DAYS:  # the regulatory 250-day window exists
            tl250 = bst.traffic_light(r_exc, n_r, self.alpha)
            out.update(zone_last_250=tl250.zone, exceptions_last_250=r_exc,
                       plus_factor_last_250=tl250.plus_factor)
        else:
            out.update(zone_last_250="n/a", exceptions_last_250=r_exc,
                       plus_factor_last_250=nan)
        out["zone_headline"] = out["zone_last_250"] if n_r >= ROLLING_DAYS else tl.zone
        es_n, es_x = int(self.es_n[k]), int(self.es_n_exc[k])
        if es_n:
            sr = float(self.es_sum_exc_ratio[k])
            out.update(as_z1=(1.0 - sr / es_x) if es_x else nan,
                       as_z2=1.0 - sr / (es_n * self.es_alpha), es_exceptions=es_x)
            out["as_z2_zone"] = bst.z2_zone(out["as_z2"])
        T2 = int(self.de_n[k])
        if T2 > DE_LAGS and self.de_sum_e2[k] > 0:
            a = self.es_alpha
            u_es = math.sqrt(T2) * (float(self.de_sum_h[k]) / T2 - a / 2) / math.sqrt(
                a * (1 / 3 - a / 4))
            den = float(self.de_sum_e2[k]) / T2
            rho = [float(self.de_lag[k, j]) / (T2 - j - 1) / den for j in range(DE_LAGS)]
            c_es = T2 * sum(v * v for v in rho)
            out.update(de_u_es=u_es, de_u_p=float(2 * norm.sf(abs(u_es))),
                       de_c_es=c_es, de_c_p=float(chi2.sf(c_es, DE_LAGS)))
        if self.m_n[k]:
            mn, mx = float(self.m_min[k]), float(self.m_max[k])
            out.update(avg_margin_usd=float(self.m_sum[k]) / int(self.m_n[k]),
                       avg_margin_to_notional=float(self.m_sum_ratio[k]) / int(self.m_n[k]),
                       peak_to_trough=(mx / mn) if mn > 0 else nan,
                       max_loss_usd=float(self.loss_max[k]),
                       max_shortfall_usd=float(self.shortfall_max[k]))
            for j, n in enumerate(HORIZONS):
                ir, ia = float(self.inc_ratio[k, j]), float(self.inc_abs[k, j])
                out[f"max_{n}d_ratio"] = ir if ir > -math.inf else nan
                out[f"max_{n}d_increase_usd"] = ia if ia > -math.inf else nan
        return out


def _ind_from_counts(trans: list[int], T: int) -> bst.LRTest:
    n00, n01, n10, n11 = trans
    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (T - 1)
    xl = bst.xlogy
    lr = -2.0 * (xl(n00 + n10, 1 - pi) + xl(n01 + n11, pi)) + 2.0 * (
        xl(n00, 1 - pi01) + xl(n01, pi01) + xl(n10, 1 - pi11) + xl(n11, pi11))
    lr = max(0.0, lr)
    return bst.LRTest(lr, 1, float(chi2.sf(lr, 1)))


def du_u(scenario_losses: FloatArray | None, loss: FloatArray) -> FloatArray | None:
    """``u = F(-L)`` per book from the model's scenario losses: share of scenarios losing >= L."""
    if scenario_losses is None:
        return None
    s = scenario_losses
    valid = np.isfinite(s)
    n = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(valid & (s >= loss[None, :]), 1.0, 0.0).sum(axis=0) / n
    return np.asarray(np.where(n > 0, u, np.nan), dtype=np.float64)


@dataclass
class _Pending:
    row: int
    books: DayBooks
    margins: DayMargins


@dataclass(frozen=True)
class Settlement:
    """What settling one as-of row adds to the statistics, per book, shape (n_books,) each.

    Computed by :func:`settlement` (pure: the day's margins and the realised P&L), applied in
    row order by :meth:`ContinuousBacktest.apply`. Splitting the two lets the expensive part
    (margining a day) run anywhere, e.g. on other processes for other days, while the
    sequential statistics stay in one place.
    """

    row: int
    date: str
    margin: FloatArray
    loss: FloatArray
    gross_notional_usd: FloatArray
    var: FloatArray | None
    es: FloatArray | None
    u: FloatArray | None
    components: Mapping[str, FloatArray] | None = None
    binding: NDArray[np.int8] | None = None
    binding_terms: tuple[str, ...] = ()
    levels: Mapping[str, FloatArray] | None = None


def settlement(path: MarketPath, row: int, books: DayBooks, margins: DayMargins,
               horizon_days: int) -> Settlement:
    """Settle as-of ``row``: realised loss over ``horizon_days`` rows and the u values."""
    loss = -books.pnl_usd(path, row + horizon_days)
    return Settlement(row, as_day(path.times[row]), margins.margin, loss,
                      books.gross_notional_usd, margins.var, margins.es,
                      du_u(margins.scenario_losses, loss), margins.components,
                      margins.binding, margins.binding_terms, margins.levels)


def margin_rows(path: MarketPath, table: TemplateTable, provider: MarginProvider,
                rows: range, horizon_days: int) -> list[Settlement]:
    """Margin and settle the as-of ``rows`` (each row sees the path truncated at it)."""
    out = []
    for i in rows:
        books = instantiate(table, path, i)
        out.append(settlement(path, i, books, provider.day_margins(path.upto(i), books),
                              horizon_days))
    return out


class ContinuousBacktest:
    """Incremental walk-forward of one provider over a fixed set of book templates.

    Call :meth:`update` with the market path (it may have grown since the last call): every
    as-of row from ``start_row`` not yet margined is margined (provider sees the path truncated
    at that row), and every pending row whose horizon has arrived is settled. Rows past
    ``end_row`` are not margined.
    """

    def __init__(self, templates: list[BookTemplate], provider: MarginProvider,
                 underlyings: tuple[str, ...], config: BacktestConfig = BacktestConfig(),
                 start_row: int = 0, end_row: int | None = None,
                 keep_records: bool = True, clock: Callable[[], float] | None = None) -> None:
        self.templates = list(templates)
        self.provider = provider
        self.config = config
        self.table = TemplateTable.build(self.templates, underlyings)
        self.underlyings = tuple(underlyings)
        self.next_row = max(int(start_row), int(config.min_history_days))
        self.start_row = self.next_row
        self.end_row = end_row
        self.pending: deque[_Pending] = deque()
        self.acc = StatsAccumulator(len(self.templates), config.alpha, config.es_alpha)
        self.keep_records = keep_records
        self._records: list[dict[str, Any]] = []
        self._called_prev = np.full(len(self.templates), np.nan)
        self.timings = {"margin_s": 0.0, "instantiate_s": 0.0, "settle_s": 0.0}
        # the shell injects a clock (time.perf_counter) to get the time split; the core has none
        self._clock: Callable[[], float] = clock if clock is not None else (lambda: 0.0)

    def _margin_row(self, path: MarketPath, i: int) -> None:
        t0 = self._clock()
        books = instantiate(self.table, path, i)
        t1 = self._clock()
        dm = self.provider.day_margins(path.upto(i), books)
        t2 = self._clock()
        self.timings["instantiate_s"] += t1 - t0
        self.timings["margin_s"] += t2 - t1
        self.pending.append(_Pending(i, books, dm))

    def _settle(self, path: MarketPath, p: _Pending) -> None:
        t0 = self._clock()
        self.apply(settlement(path, p.row, p.books, p.margins, self.config.horizon_days),
                   timed=False)
        self.timings["settle_s"] += self._clock() - t0

    def called(self, st: Settlement) -> Settlement:
        """``st`` with the buffer with release applied to its margins (see BacktestConfig)."""
        cfg = self.config
        if cfg.release_buffer <= 0.0:
            return st
        base = st.margin
        prev = self._called_prev
        a = release_step(prev, base, cfg.release_buffer, cfg.rebuild_speed)
        ok = np.isfinite(base)
        self._called_prev = np.where(ok, a, prev)
        comps = dict(st.components or {})
        comps["release_buffer"] = np.where(ok, a - base, np.nan)
        return dataclasses.replace(st, margin=np.where(ok, a, np.nan), components=comps)

    def apply(self, st: Settlement, timed: bool = True) -> None:
        """Add one settled row to the statistics (rows must come in order)."""
        t0 = self._clock()
        st = self.called(st)
        loss = st.loss
        self.acc.add(st.margin, loss, st.gross_notional_usd, st.var, st.es, st.u)
        if self.keep_records:
            for k in np.flatnonzero(np.isfinite(st.margin) & np.isfinite(loss)):
                self._records.append({
                    "date": st.date, "portfolio": self.templates[k].name,
                    "category": self.templates[k].category, "model": self.provider.name,
                    "margin_usd": float(st.margin[k]), "loss_usd": float(loss[k]),
                    "exception": bool(loss[k] > st.margin[k]),
                    "var_usd": float(st.var[k]) if st.var is not None else math.nan,
                    "es_usd": float(st.es[k]) if st.es is not None else math.nan,
                    "u": float(st.u[k]) if st.u is not None else math.nan,
                    "gross_notional_usd": float(st.gross_notional_usd[k]),
                    **({f"comp_{c}": float(v[k]) for c, v in st.components.items()}
                       if st.components is not None else {}),
                    **({"binding": st.binding_terms[int(st.binding[k])]
                        if st.binding[k] >= 0 else ""} if st.binding is not None else {}),
                    **({f"lvl_{c}": float(v[k]) for c, v in st.levels.items()}
                       if st.levels is not None else {}),
                })
        if timed:
            self.timings["settle_s"] += self._clock() - t0

    def rows_to_margin(self, path: MarketPath) -> range:
        """As-of rows :meth:`update` would margin next on ``path`` (all settle within it)."""
        h = self.config.horizon_days
        last = len(path) - 1
        stop = last - h if self.end_row is None else min(last - h, int(self.end_row))
        return range(self.next_row, max(self.next_row, stop + 1))

    def apply_rows(self, settlements: list[Settlement]) -> None:
        """Apply the settlements of the next rows, margined elsewhere (in row order)."""
        for st in settlements:
            if st.row != self.next_row or self.pending:
                raise ValueError(f"settlements: expected row {self.next_row}, got {st.row}")
            self.apply(st)
            self.next_row += 1

    def update(self, path: MarketPath, progress: Callable[[int, int], None] | None = None
               ) -> int:
        """Margin new rows and settle what has matured; returns the number of settled rows."""
        h = self.config.horizon_days
        last = len(path) - 1
        rows = self.rows_to_margin(path)
        stop = rows.stop - 1
        todo = len(rows)
        done = 0
        settled = 0
        stride = int(self.config.stride)
        while self.next_row <= stop:
            if (self.next_row - self.start_row) % stride:
                self.next_row += 1
                done += 1
                continue
            self._margin_row(path, self.next_row)
            self.next_row += 1
            while self.pending and self.pending[0].row + h <= last:
                self._settle(path, self.pending.popleft())
                settled += 1
            done += 1
            if progress is not None:
                progress(done, todo)
        while self.pending and self.pending[0].row + h <= last:
            self._settle(path, self.pending.popleft())
            settled += 1
        return settled

    # -- results ---------------------------------------------------------------------------
    def records(self) -> pd.DataFrame:
        """Tidy daily table: one row per (date, book) settled."""
        cols = ["date", "portfolio", "category", "model", "margin_usd", "loss_usd", "exception",
                "var_usd", "es_usd", "u", "gross_notional_usd"]
        if self._records:
            cols += [c for c in self._records[0] if c not in cols]
        return pd.DataFrame(self._records, columns=cols)

    def summary(self) -> pd.DataFrame:
        """One row per book: exceptions, tests, zones, ES tests, procyclicality, cost."""
        rows = []
        for k, tpl in enumerate(self.templates):
            d = {"model": self.provider.name, "portfolio": tpl.name, "category": tpl.category}
            d.update(self.acc.book_stats(k))
            rows.append(d)
        return pd.DataFrame(rows)


def category_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (model, category): pooled exceptions, zone counts, mean cost and procyclicality."""
    s = summary[summary["n_obs"] > 0]
    if s.empty:
        return pd.DataFrame()
    rows = []
    for (model, cat), g in s.groupby(["model", "category"], sort=True):
        zcol = "zone_headline" if "zone_headline" in g else "zone_last_250"
        zones = g[zcol].value_counts() if zcol in g else pd.Series()
        short = bool((g["n_obs"] < ROLLING_DAYS).any())
        rows.append({
            "model": model, "category": cat, "n_books": len(g),
            "book_days": int(g["n_obs"].sum()), "exceptions": int(g["n_exceptions"].sum()),
            "exception_rate": float(g["n_exceptions"].sum() / g["n_obs"].sum()),
            "books_green": int(zones.get("green", 0)), "books_yellow": int(zones.get("yellow", 0)),
            "books_red": int(zones.get("red", 0)),
            "zone_window": "whole window (< 250 days)" if short else "last 250 days",
            "kupiec_reject_5pct": int((g.get("kupiec_p", pd.Series(dtype=float)) < 0.05).sum()),
            "avg_margin_to_notional": float(g["avg_margin_to_notional"].mean())
            if "avg_margin_to_notional" in g else math.nan,
            "median_peak_to_trough": float(g["peak_to_trough"].median())
            if "peak_to_trough" in g else math.nan,
            "median_max_30d_ratio": float(g["max_30d_ratio"].median())
            if "max_30d_ratio" in g else math.nan,
        })
    return pd.DataFrame(rows)


def walk_forward(path: MarketPath, templates: list[BookTemplate], provider: MarginProvider,
                 config: BacktestConfig = BacktestConfig(), start: str | None = None,
                 end: str | None = None, keep_records: bool = True,
                 progress: Callable[[int, int], None] | None = None,
                 clock: Callable[[], float] | None = None) -> ContinuousBacktest:
    """Full walk-forward over ``[start, end]`` (as-of days; default: all the path allows)."""
    s = path.index_of(start) if start is not None else 0
    e = path.index_of(end) if end is not None else None
    bt = ContinuousBacktest(templates, provider, path.underlyings, config, s, e, keep_records,
                            clock)
    bt.update(path, progress)
    return bt
