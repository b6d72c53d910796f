"""Recombine the dynamic model's raw terms under other parameters; out-of-sample selection.

A walk-forward of ``dynamic`` with :class:`~marginproof.backtest.batch_dynamic.
HistoryBatchProvider` ``(levels=True)`` and ``scaling = 1`` records, per book-day, every term
the requirement is built from: the core measure ``M``, the stressed-period measure ``S``, the
10-year-floor measure ``F``, the worst stress loss ``L`` and the add-ons. For one EWMA decay
those terms do not depend on the other parameters, so any candidate

``IM = max(apc_requirement(c M, c S, c F, w, b), f L) + add-ons`` (the model's own functions),
then the buffer with release ``rb`` on each book's daily path,

is evaluated without re-running the scenarios (:func:`recombine`, equal to the model's margin
for those parameters, tested). :func:`select_walk_forward` picks the candidate with the lowest
target loss (:attr:`~marginproof.calibration.targets.Evaluation.loss`) on the data before each
test year and records its margins on that year: the out-of-sample path the targets are judged
on. The recommendation is the best candidate on all the data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.apc.tools import buffer_with_release
from marginproof.calibration.targets import (
    DEFAULT_TARGETS,
    Evaluation,
    Panel,
    Targets,
    evaluate,
)
from marginproof.models.dynamic import apc_requirement, stress_floor_requirement

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class LevelPanel:
    """Raw terms of ``dynamic`` on a :class:`Panel` grid (scaling 1), shape (n_days, n_books).

    ``panel.margin`` holds the core measure ``M``; ``stressed`` is NaN where no stressed
    period had ended.
    """

    lam: float
    panel: Panel
    stressed: FloatArray
    floor_10y: FloatArray
    stress_loss: FloatArray
    liquidity: FloatArray
    concentration: FloatArray
    funding: FloatArray

    @classmethod
    def from_records(cls, records: Any, lam: float) -> LevelPanel:
        """From a records table with ``comp_*`` and ``lvl_*`` columns (scaling 1)."""
        from marginproof.calibration.targets import panel_from_records

        base = panel_from_records(records, "comp_core")

        def g(col: str) -> FloatArray:
            return panel_from_records(records, col).margin

        return cls(float(lam), base, g("lvl_stressed"), g("lvl_floor_10y"),
                   g("lvl_stress_loss"), g("comp_liquidity"), g("comp_concentration"),
                   g("comp_funding"))


@dataclass(frozen=True)
class Candidate:
    """One parameter set of ``dynamic`` (the parts :func:`recombine` varies)."""

    lam: float
    scaling: float
    stressed_weight: float
    floor_10y: bool
    floor_fraction: float
    release_buffer: float

    def overrides(self) -> dict[str, Any]:
        """The parameter-file sections these values go into."""
        return {"fhs": {"lambda": self.lam}, "mc": {"lambda": self.lam},
                "risk": {"scaling": self.scaling},
                "apc": {"stressed_weight": self.stressed_weight, "floor_10y": self.floor_10y,
                        "release_buffer": self.release_buffer, "static_buffer": 0.0},
                "stress": {"floor_fraction": self.floor_fraction}}

    def label(self) -> str:
        return (f"lambda {self.lam:g}, c {self.scaling:g}, w {self.stressed_weight:g}, "
                f"floor {'on' if self.floor_10y else 'off'}, f {self.floor_fraction:g}, "
                f"release {self.release_buffer:g}")


def release_path(margin: FloatArray, buffer: float, rebuild_speed: float = 0.0) -> FloatArray:
    """:func:`buffer_with_release` on each column (book) over its evaluated days.

    NaN days (book not evaluated) are skipped: the buffer carries over them.
    """
    if buffer <= 0.0:
        return margin
    out = np.full(margin.shape, np.nan)
    for j in range(margin.shape[1]):
        ok = np.isfinite(margin[:, j])
        if ok.any():
            out[ok, j] = buffer_with_release(margin[ok, j], buffer, rebuild_speed)
    return out


def recombine(lp: LevelPanel, cand: Candidate) -> FloatArray:
    """Margin of every book-day under ``cand`` (module docstring), shape (n_days, n_books)."""
    c = cand.scaling
    m = c * lp.panel.margin
    s = c * lp.stressed
    w = cand.stressed_weight if cand.stressed_weight > 0.0 else 0.0
    with np.errstate(invalid="ignore"):
        blend = apc_requirement(m, s, None, w, 0.0) if w > 0.0 else m
        a = np.where(np.isfinite(s), blend, m) if w > 0.0 else m
        a = np.maximum(a, c * lp.floor_10y) if cand.floor_10y else a
        cc = stress_floor_requirement(a, lp.stress_loss, cand.floor_fraction)
    im = cc + lp.liquidity + c * lp.concentration + lp.funding
    return release_path(np.asarray(im, dtype=np.float64), cand.release_buffer)


def candidate_grid(lams: Sequence[float], scalings: Sequence[float],
                   weights: Sequence[float], floors: Sequence[bool],
                   fractions: Sequence[float], releases: Sequence[float]) -> list[Candidate]:
    return [Candidate(float(a), float(b), float(c), bool(d), float(e), float(f))
            for a, b, c, d, e, f in itertools.product(lams, scalings, weights, floors,
                                                       fractions, releases)]


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: the candidate chosen on the data before ``test_year``."""

    test_year: int
    candidate: Candidate
    train_loss: float
    train_days: int
    test_days: int


@dataclass(frozen=True)
class Selection:
    """Outcome of :func:`select_walk_forward`."""

    best: Candidate
    best_full: Evaluation
    folds: tuple[Fold, ...]
    oos_panel: Panel
    oos: Evaluation
    table: tuple[tuple[Candidate, Evaluation], ...]

    def frontier(self) -> list[tuple[Candidate, Evaluation]]:
        """Candidates not dominated in (cost, exception rate distance to alpha)... as listed:
        the lowest cost for each level of the Kupiec pass share (full sample)."""
        pts = sorted(self.table, key=lambda ce: ce[1].cost)
        out: list[tuple[Candidate, Evaluation]] = []
        best = -1.0
        for c, e in pts:
            if e.kupiec_ok_share > best + 1e-12:
                out.append((c, e))
                best = e.kupiec_ok_share
        return out


Refs = Mapping[str, FloatArray]


def _slice(refs: Refs | None, mask: NDArray[np.bool_]) -> dict[str, FloatArray]:
    return {k: v[mask] for k, v in (refs or {}).items()}


def select_walk_forward(levels: Mapping[float, LevelPanel], candidates: Sequence[Candidate],
                        first_test_year: int, targets: Targets = DEFAULT_TARGETS,
                        references: Refs | None = None,
                        progress: Callable[[int, int], None] | None = None) -> Selection:
    """Walk-forward choice by calendar year (module docstring).

    ``levels`` maps each decay in the candidates to its :class:`LevelPanel` (the same day and
    book grid for all); ``references`` are reference margins on that grid (cost ratios).
    """
    lp0 = next(iter(levels.values()))
    dates = lp0.panel.dates.astype("datetime64[D]")
    years = dates.astype("datetime64[Y]").astype(int) + 1970
    last_year = int(years.max())
    margins: dict[Candidate, FloatArray] = {}
    total = len(candidates) * (1 + max(0, last_year - first_test_year + 1))
    done = 0

    def margin_of(c: Candidate) -> FloatArray:
        if c not in margins:
            margins[c] = recombine(levels[c.lam], c)
        return margins[c]

    def ev(c: Candidate, mask: NDArray[np.bool_]) -> Evaluation:
        p = levels[c.lam].panel
        return evaluate(p.with_margin(margin_of(c)).slice_days(mask), targets,
                        _slice(references, mask))

    folds: list[Fold] = []
    oos = np.full(lp0.panel.margin.shape, np.nan)
    for year in range(int(first_test_year), last_year + 1):
        train = years < year
        test = years == year
        if train.sum() < 250 or not test.any():
            continue
        scored = []
        for c in candidates:
            scored.append((ev(c, train).loss, c))
            done += 1
            if progress:
                progress(done, total)
        loss, best = min(scored, key=lambda t: (t[0], t[1].scaling, -t[1].lam))
        oos[test] = margin_of(best)[test]
        folds.append(Fold(year, best, float(loss), int(train.sum()), int(test.sum())))
    table = []
    allm = np.ones(dates.shape, bool)
    for c in candidates:
        table.append((c, ev(c, allm)))
        done += 1
        if progress:
            progress(done, total)
    best_c, best_e = min(table, key=lambda t: (t[1].loss, t[0].scaling, -t[0].lam))
    tested = np.isin(years, [f.test_year for f in folds])
    oos_panel = lp0.panel.with_margin(oos).slice_days(tested)
    oos_eval = evaluate(oos_panel, targets, _slice(references, tested))
    return Selection(best_c, best_e, tuple(folds), oos_panel, oos_eval, tuple(table))


def evaluation_dict(e: Evaluation) -> dict[str, Any]:
    """JSON-ready view of an :class:`Evaluation`."""
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        return x
    return {
        "cost": clean(e.cost), "exception_rate": clean(e.exception_rate),
        "kupiec_ok_share": clean(e.kupiec_ok_share), "met": e.met, "loss": clean(e.loss),
        "checks": dict(e.checks), "violations": {k: clean(v) for k, v in e.violations.items()},
        "cost_ratios": {k: clean(v) for k, v in e.cost_ratios.items()},
        "categories": {k: {kk: clean(vv) for kk, vv in v.items()}
                       for k, v in e.categories.items()},
        "windows": [{k: clean(v) for k, v in asdict(w).items()} for w in e.windows],
        "books": [{k: clean(v) for k, v in asdict(b).items()} for b in e.books],
    }


def binding_shares(lp: LevelPanel, cand: Candidate) -> dict[str, float]:
    """Share of evaluated book-days on which each term sets the margin under ``cand``.

    ``core``, ``stressed_weight``, ``floor_10y``, ``stress_floor``: the term that sets the
    requirement before add-ons (ties to the earlier); ``buffer_held``: the called margin is
    above the requirement (the release buffer is not exhausted); ``addons``: liquidity,
    concentration and funding together are at least 1 % of the margin. Also the mean share of
    the margin each part makes up (``mean_share_*``).
    """
    c = cand.scaling
    m = c * lp.panel.margin
    ok = np.isfinite(m)
    n = max(1, int(ok.sum()))
    with np.errstate(invalid="ignore"):
        s = c * lp.stressed
        w = cand.stressed_weight
        blend = (1.0 - w) * m + w * s if w > 0.0 else m
        has_b = np.isfinite(blend) & (blend > m) if w > 0.0 else np.zeros(m.shape, bool)
        a = np.where(has_b, blend, m)
        fl = c * lp.floor_10y if cand.floor_10y else np.full(m.shape, -np.inf)
        has_f = np.isfinite(fl) & (fl > a)
        a2 = np.where(has_f, fl, a)
        sf = cand.floor_fraction * lp.stress_loss
        has_s = np.isfinite(sf) & (sf > a2)
        cc = np.where(has_s, sf, a2)
        add = lp.liquidity + c * lp.concentration + lp.funding
        base = cc + add
        called = release_path(base, cand.release_buffer)
    term = np.where(has_s, 3, np.where(has_f, 2, np.where(has_b, 1, 0)))
    out = {name: float(((term == j) & ok).sum() / n)
           for j, name in enumerate(("core", "stressed_weight", "floor_10y", "stress_floor"))}
    with np.errstate(invalid="ignore", divide="ignore"):
        out["buffer_held"] = float(((called > base * (1 + 1e-12)) & ok).sum() / n)
        out["addons"] = float(((add >= 0.01 * called) & ok).sum() / n)
        tot = np.where(ok & (called > 0), called, np.nan)
        for name, part in (("core", m), ("apc", a2 - m), ("stress_floor", cc - a2),
                           ("addons", add), ("buffer", called - base)):
            out[f"mean_share_{name}"] = float(np.nanmean(part / tot))
    return out
