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
from dataclasses import dataclass, field
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


@dataclass
class _Book:
    """Running statistics of one book (mutable, private)."""

    n_obs: int = 0
    n_exc: int = 0
    trans: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # n00 n01 n10 n11
    last: int = -1
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=ROLLING_DAYS))
    es_n: int = 0
    es_sum_exc_ratio: float = 0.0
    es_n_exc: int = 0
    de_n: int = 0
    de_sum_h: float = 0.0
    de_sum_e2: float = 0.0
    de_lag: list[float] = field(default_factory=lambda: [0.0] * DE_LAGS)
    de_recent: deque[float] = field(default_factory=lambda: deque(maxlen=DE_LAGS))
    m_n: int = 0
    m_sum: float = 0.0
    m_sum_ratio: float = 0.0
    m_min: float = math.inf
    m_max: float = -math.inf
    m_recent: deque[float] = field(default_factory=lambda: deque(maxlen=max(HORIZONS)))
    inc_ratio: dict[int, float] = field(default_factory=lambda: dict.fromkeys(HORIZONS, -math.inf))
    inc_abs: dict[int, float] = field(default_factory=lambda: dict.fromkeys(HORIZONS, -math.inf))
    loss_max: float = -math.inf
    shortfall_max: float = 0.0


class StatsAccumulator:
    """Per-book running backtest statistics (see module docstring)."""

    def __init__(self, n_books: int, alpha: float, es_alpha: float) -> None:
        self.alpha, self.es_alpha = float(alpha), float(es_alpha)
        self.books = [_Book() for _ in range(int(n_books))]

    def add(self, margin: FloatArray, loss: FloatArray, gross: FloatArray,
            var: FloatArray | None = None, es: FloatArray | None = None,
            u: FloatArray | None = None) -> None:
        """Add one settled day, arrays of shape (n_books,); NaN entries are skipped."""
        a_es = self.es_alpha
        for k, b in enumerate(self.books):
            m, lo = float(margin[k]), float(loss[k])
            if math.isnan(m) or math.isnan(lo):
                continue
            exc = int(lo > m)
            b.n_obs += 1
            b.n_exc += exc
            if b.last >= 0:
                b.trans[2 * b.last + exc] += 1
            b.last = exc
            b.recent.append(exc)
            b.loss_max = max(b.loss_max, lo)
            b.shortfall_max = max(b.shortfall_max, lo - m)
            if es is not None and var is not None and es[k] > 0 and np.isfinite(var[k]):
                b.es_n += 1
                if lo > var[k]:
                    b.es_n_exc += 1
                    b.es_sum_exc_ratio += lo / float(es[k])
            if u is not None and np.isfinite(u[k]):
                uk = float(u[k])
                h = (a_es - uk) / a_es if uk <= a_es else 0.0
                e = h - a_es / 2.0
                b.de_n += 1
                b.de_sum_h += h
                b.de_sum_e2 += e * e
                for j, prev in enumerate(reversed(b.de_recent)):
                    b.de_lag[j] += e * prev
                b.de_recent.append(e)
            if math.isfinite(m):
                b.m_n += 1
                b.m_sum += m
                g = float(gross[k])
                b.m_sum_ratio += m / g if g > 0 else 0.0
                b.m_min, b.m_max = min(b.m_min, m), max(b.m_max, m)
                for n in HORIZONS:
                    if len(b.m_recent) >= n:
                        prev_m = b.m_recent[-n]
                        if prev_m > 0:
                            b.inc_ratio[n] = max(b.inc_ratio[n], m / prev_m)
                        b.inc_abs[n] = max(b.inc_abs[n], m - prev_m)
                b.m_recent.append(m)

    def to_state(self) -> dict[str, Any]:
        """State as plain lists and dicts (persist a continuous backtest between restarts).

        Untouched extremes are +-inf (Python's ``json`` writes them as ``Infinity``).
        """
        books = []
        for b in self.books:
            d = dict(b.__dict__)
            for name in ("recent", "de_recent", "m_recent"):
                d[name] = list(d[name])
            for name in ("inc_ratio", "inc_abs"):
                d[name] = {str(n): v for n, v in d[name].items()}
            books.append(d)
        return {"alpha": self.alpha, "es_alpha": self.es_alpha, "books": books}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> StatsAccumulator:
        """Rebuild from :meth:`to_state` output (exactly: the next ``add`` continues it)."""
        acc = cls(len(state["books"]), float(state["alpha"]), float(state["es_alpha"]))
        for b, d in zip(acc.books, state["books"], strict=True):
            for name, v in d.items():
                if name in ("recent", "de_recent", "m_recent"):
                    getattr(b, name).extend(v)
                elif name in ("inc_ratio", "inc_abs"):
                    setattr(b, name, {int(n): float(x) for n, x in v.items()})
                elif name == "trans":
                    b.trans = [int(x) for x in v]
                elif name == "de_lag":
                    b.de_lag = [float(x) for x in v]
                else:
                    setattr(b, name, v)
        return acc

    def book_stats(self, k: int) -> dict[str, Any]:
        """Statistics of book ``k`` (a flat dict; NaN where undefined)."""
        b = self.books[k]
        out: dict[str, Any] = {"n_obs": b.n_obs, "n_exceptions": b.n_exc}
        nan = math.nan
        if b.n_obs == 0:
            return out
        T, x = b.n_obs, b.n_exc
        pof = bst.kupiec_pof(T, x, self.alpha)
        out.update(exception_rate=x / T, coverage_ratio=1.0 - x / T, kupiec_lr=pof.lr,
                   kupiec_p=pof.p_value)
        if T >= 2:
            ind = _ind_from_counts(b.trans, T)
            out.update(christoffersen_ind_lr=ind.lr, christoffersen_ind_p=ind.p_value,
                       christoffersen_cc_lr=pof.lr + ind.lr,
                       christoffersen_cc_p=float(chi2.sf(pof.lr + ind.lr, 2)))
        tl = bst.traffic_light(x, T, self.alpha)
        out.update(zone=tl.zone, zone_cumulative_probability=tl.cumulative_probability)
        r = list(b.recent)
        if len(r) >= ROLLING_DAYS:  # the regulatory 250-day window exists
            tl250 = bst.traffic_light(sum(r), len(r), self.alpha)
            out.update(zone_last_250=tl250.zone, exceptions_last_250=sum(r),
                       plus_factor_last_250=tl250.plus_factor)
        else:
            out.update(zone_last_250="n/a", exceptions_last_250=sum(r),
                       plus_factor_last_250=nan)
        out["zone_headline"] = out["zone_last_250"] if len(r) >= ROLLING_DAYS else tl.zone
        if b.es_n:
            out.update(as_z1=(1.0 - b.es_sum_exc_ratio / b.es_n_exc) if b.es_n_exc else nan,
                       as_z2=1.0 - b.es_sum_exc_ratio / (b.es_n * self.es_alpha),
                       es_exceptions=b.es_n_exc)
            out["as_z2_zone"] = bst.z2_zone(out["as_z2"])
        if b.de_n > DE_LAGS and b.de_sum_e2 > 0:
            a = self.es_alpha
            T2 = b.de_n
            u_es = math.sqrt(T2) * (b.de_sum_h / T2 - a / 2) / math.sqrt(a * (1 / 3 - a / 4))
            den = b.de_sum_e2 / T2
            rho = [b.de_lag[j] / (T2 - j - 1) / den for j in range(DE_LAGS)]
            c_es = T2 * sum(x * x for x in rho)
            out.update(de_u_es=u_es, de_u_p=float(2 * norm.sf(abs(u_es))),
                       de_c_es=c_es, de_c_p=float(chi2.sf(c_es, DE_LAGS)))
        if b.m_n:
            out.update(avg_margin_usd=b.m_sum / b.m_n, avg_margin_to_notional=b.m_sum_ratio / b.m_n,
                       peak_to_trough=(b.m_max / b.m_min) if b.m_min > 0 else nan,
                       max_loss_usd=b.loss_max, max_shortfall_usd=b.shortfall_max)
            for n in HORIZONS:
                out[f"max_{n}d_ratio"] = b.inc_ratio[n] if b.inc_ratio[n] > -math.inf else nan
                out[f"max_{n}d_increase_usd"] = (b.inc_abs[n] if b.inc_abs[n] > -math.inf
                                                 else nan)
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
