"""Backtest statistics for margin (VaR) and expected-shortfall models. Pure functions.

Formulas follow ``shared/specs/risk-methods.md`` sections 1 and 2 exactly:

* Kupiec (1995) proportion-of-failures LR with ``0 ln 0 = 0``;
* Christoffersen (1998) independence and conditional-coverage LRs on the ``T - 1`` transitions
  of the exception indicator sequence;
* the Basel (BCBS 1996) traffic light from the binomial cumulative probability (green below
  95 %, yellow below 99.99 %, red otherwise) and the plus-factor table for ``T = 250``;
* Acerbi-Szekely (2014) ``Z1`` and ``Z2`` with a seeded simulator of their null distribution;
* Du-Escanciano (2017) unconditional and conditional cumulative-violation tests.

Conventions: losses positive; ``alpha`` is the tail probability (0.01 for a 99 % VaR). Chi-squared
and normal p-values use ``scipy.stats`` (``chi2.sf``, ``norm.sf``), binomial probabilities
``scipy.stats.binom.cdf``. Out-of-domain inputs raise :class:`~marginproof.errors.InputError`;
statistics that are undefined (``Z1`` with no exception) are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from marginproof.errors import InputError

FloatArray = NDArray[np.float64]

#: Basel plus-factors to the multiplier 3 for 5..9 exceptions (T = 250, 99 % VaR).
BASEL_YELLOW_PLUS = {5: 0.40, 6: 0.50, 7: 0.65, 8: 0.75, 9: 0.85}
BASEL_GREEN_BELOW = 0.95
BASEL_YELLOW_BELOW = 0.9999
#: Acerbi-Szekely (2014) near distribution-free Z2 thresholds for alpha = 2.5 %: a 5 % test
#: (yellow below) and a 0.01 % test (red below).
AS_Z2_YELLOW = -0.70
AS_Z2_RED = -1.8


def _check_alpha(alpha: float, name: str = "alpha") -> float:
    a = float(alpha)
    if not (0.0 < a < 1.0) or math.isnan(a):
        raise InputError(name, f"tail probability must be in (0, 1) (0.01, not 1), got {alpha!r}")
    return a


def xlogy(x: float, y: float) -> float:
    """``x ln y`` with the convention ``0 ln 0 = 0`` (and ``0 ln y = 0`` for any y)."""
    if x == 0.0:
        return 0.0
    return x * math.log(y)


@dataclass(frozen=True)
class LRTest:
    """A likelihood-ratio test: statistic, degrees of freedom and chi-squared p-value."""

    lr: float
    dof: int
    p_value: float

    def to_dict(self) -> dict[str, float]:
        return {"lr": self.lr, "dof": float(self.dof), "p_value": self.p_value}


def _chi2(lr: float, dof: int) -> LRTest:
    # LR >= 0 mathematically; clip the -1e-16 that rounding can produce at x = T p.
    lr = max(0.0, float(lr))
    return LRTest(lr, dof, float(stats.chi2.sf(lr, dof)))


def kupiec_pof(n_obs: int, n_exceptions: int, alpha: float) -> LRTest:
    """Kupiec proportion-of-failures test.

    ``LR = -2[(T-x) ln(1-p) + x ln p] + 2[(T-x) ln(1-p^) + x ln p^]``, ``p^ = x / T``,
    ``~ chi2(1)``; ``0 ln 0 = 0`` so ``x = 0`` gives ``-2 T ln(1-p)``.

    Parameters
    ----------
    n_obs : int
        ``T`` >= 1.
    n_exceptions : int
        ``x`` in ``[0, T]``.
    alpha : float
        Expected exception rate ``p`` (0.01 for a 99 % VaR).
    """
    T, x = int(n_obs), int(n_exceptions)
    p = _check_alpha(alpha)
    if T < 1:
        raise InputError("n_obs", f"need at least one observation, got {n_obs!r}")
    if not 0 <= x <= T:
        raise InputError("n_exceptions", f"must be in [0, {T}], got {n_exceptions!r}")
    ph = x / T
    null = xlogy(T - x, 1.0 - p) + xlogy(x, p)
    alt = xlogy(T - x, 1.0 - ph) + xlogy(x, ph)
    return _chi2(-2.0 * null + 2.0 * alt, 1)


def _indicators(exceptions: ArrayLike) -> NDArray[np.int8]:
    a = np.asarray(exceptions)
    if a.ndim != 1:
        raise InputError("exceptions", "must be a 1-D indicator sequence")
    if a.dtype != np.bool_ and not np.all(np.isin(a, (0, 1))):
        raise InputError("exceptions", "indicators must be 0/1 or boolean")
    return a.astype(np.int8)


@dataclass(frozen=True)
class Transitions:
    """Transition counts ``N_ij = #{I_{t-1} = i, I_t = j}`` over ``T - 1`` pairs."""

    n00: int
    n01: int
    n10: int
    n11: int


def transition_counts(exceptions: ArrayLike) -> Transitions:
    """Counts of the four transitions of a 0/1 sequence (shape (T,))."""
    i = _indicators(exceptions)
    prev, cur = i[:-1], i[1:]
    return Transitions(
        int(np.sum((prev == 0) & (cur == 0))), int(np.sum((prev == 0) & (cur == 1))),
        int(np.sum((prev == 1) & (cur == 0))), int(np.sum((prev == 1) & (cur == 1))),
    )


def _safe_ratio(num: int, den: int) -> float:
    return num / den if den > 0 else 0.0


def christoffersen_independence(exceptions: ArrayLike) -> LRTest:
    """Christoffersen (1998) independence test on the exception indicators, ``~ chi2(1)``.

    ``pi01 = N01/(N00+N01)``, ``pi11 = N11/(N10+N11)``, ``pi = (N01+N11)/(T-1)``;
    ``LR_ind = -2[(N00+N10) ln(1-pi) + (N01+N11) ln pi]
    + 2[N00 ln(1-pi01) + N01 ln pi01 + N10 ln(1-pi11) + N11 ln pi11]`` with ``0 ln 0 = 0``
    (an empty row of the transition matrix contributes nothing).
    """
    i = _indicators(exceptions)
    if i.shape[0] < 2:
        raise InputError("exceptions", "need at least two observations")
    c = transition_counts(i)
    pi01 = _safe_ratio(c.n01, c.n00 + c.n01)
    pi11 = _safe_ratio(c.n11, c.n10 + c.n11)
    pi = (c.n01 + c.n11) / (i.shape[0] - 1)
    null = xlogy(c.n00 + c.n10, 1.0 - pi) + xlogy(c.n01 + c.n11, pi)
    alt = (xlogy(c.n00, 1.0 - pi01) + xlogy(c.n01, pi01)
           + xlogy(c.n10, 1.0 - pi11) + xlogy(c.n11, pi11))
    return _chi2(-2.0 * null + 2.0 * alt, 1)


def christoffersen_cc(exceptions: ArrayLike, alpha: float) -> LRTest:
    """Conditional coverage: ``LR_cc = LR_pof (all T) + LR_ind``, ``~ chi2(2)``."""
    i = _indicators(exceptions)
    pof = kupiec_pof(i.shape[0], int(i.sum()), alpha)
    ind = christoffersen_independence(i)
    return _chi2(pof.lr + ind.lr, 2)


@dataclass(frozen=True)
class TrafficLight:
    """Basel traffic-light zone of an exception count.

    Attributes
    ----------
    zone : str
        ``green``, ``yellow`` or ``red``.
    cumulative_probability : float
        ``P(X <= x)``, ``X ~ Binomial(T, alpha)``.
    plus_factor : float
        Addition to the multiplier 3 (NaN unless ``T = 250`` and ``alpha = 0.01``).
    green_max, yellow_max : int
        Largest exception counts still green / yellow for this ``T``.
    """

    zone: str
    n_obs: int
    n_exceptions: int
    cumulative_probability: float
    plus_factor: float
    green_max: int
    yellow_max: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def zone_bounds(n_obs: int, alpha: float = 0.01) -> tuple[int, int]:
    """``(green_max, yellow_max)``: the largest counts with ``P(X <= x)`` below 95 % / 99.99 %."""
    T = int(n_obs)
    a = _check_alpha(alpha)
    cdf = stats.binom.cdf(np.arange(T + 1), T, a)
    green = int(np.sum(cdf < BASEL_GREEN_BELOW)) - 1
    yellow = int(np.sum(cdf < BASEL_YELLOW_BELOW)) - 1
    return green, yellow


def traffic_light(n_exceptions: int, n_obs: int = 250, alpha: float = 0.01) -> TrafficLight:
    """Basel traffic-light zone (BCBS 1996) of ``n_exceptions`` in ``n_obs`` days.

    Green if ``P(X <= x) < 0.95``, yellow if ``< 0.9999``, red otherwise, with
    ``X ~ Binomial(T, alpha)``: for ``T = 250`` at 99 % green 0-4, yellow 5-9, red >= 10.
    """
    T, x = int(n_obs), int(n_exceptions)
    a = _check_alpha(alpha)
    if T < 1:
        raise InputError("n_obs", f"need at least one observation, got {n_obs!r}")
    if not 0 <= x <= T:
        raise InputError("n_exceptions", f"must be in [0, {T}], got {n_exceptions!r}")
    cum = float(stats.binom.cdf(x, T, a))
    zone = "green" if cum < BASEL_GREEN_BELOW else "yellow" if cum < BASEL_YELLOW_BELOW else "red"
    plus = math.nan
    if T == 250 and abs(a - 0.01) < 1e-12:
        plus = 0.0 if zone == "green" else 1.0 if zone == "red" else BASEL_YELLOW_PLUS[x]
    g, y = zone_bounds(T, a)
    return TrafficLight(zone, T, x, cum, plus, g, y)


def _es_inputs(losses: ArrayLike, var: ArrayLike, es: ArrayLike
               ) -> tuple[FloatArray, FloatArray, FloatArray]:
    lo = np.asarray(losses, dtype=np.float64)
    v = np.broadcast_to(np.asarray(var, dtype=np.float64), lo.shape)
    e = np.broadcast_to(np.asarray(es, dtype=np.float64), lo.shape)
    if lo.ndim != 1 or lo.shape[0] == 0:
        raise InputError("losses", "must be a non-empty 1-D series")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(v))):
        raise InputError("losses", "losses and VaR must be finite")
    if np.any(~(e > 0.0)):
        raise InputError("es", "ES must be positive (and not NaN)")
    return lo, np.asarray(v), np.asarray(e)


def acerbi_szekely_z1(losses: ArrayLike, var: ArrayLike, es: ArrayLike) -> float:
    """``Z1 = 1 - (1/N) sum_t I_t L_t / ES_t`` with ``I_t = 1{L_t > VaR_t}``; NaN when ``N = 0``.

    Parameters
    ----------
    losses, var, es : array_like, shape (T,)
        Realised losses, VaR and ES forecasts (positive).
    """
    lo, v, e = _es_inputs(losses, var, es)
    exc = lo > v
    n = int(exc.sum())
    if n == 0:
        return math.nan
    return float(1.0 - np.sum(lo[exc] / e[exc]) / n)


def acerbi_szekely_z2(losses: ArrayLike, var: ArrayLike, es: ArrayLike, alpha: float) -> float:
    """``Z2 = 1 - sum_t I_t L_t / (T alpha ES_t)``; 1 with no exception, ``E[Z2] = 0`` under H0.

    Negative values mean the ES is underestimated.
    """
    lo, v, e = _es_inputs(losses, var, es)
    a = _check_alpha(alpha)
    exc = lo > v
    return float(1.0 - np.sum(lo[exc] / e[exc]) / (lo.shape[0] * a))


def z2_zone(z2: float) -> str:
    """ES traffic light from the paper's near distribution-free Z2 thresholds (alpha = 2.5 %)."""
    if math.isnan(z2):
        return "n/a"
    return "green" if z2 > AS_Z2_YELLOW else "yellow" if z2 > AS_Z2_RED else "red"


def simulate_z2_null(sample_losses: Callable[[np.random.Generator, int], FloatArray],
                     var: ArrayLike, es: ArrayLike, alpha: float, n_sims: int = 10_000,
                     seed: int = 0) -> FloatArray:
    """Simulated null distribution of ``Z2``: draw the losses from the model itself.

    Parameters
    ----------
    sample_losses : callable ``(rng, T) -> ndarray (T,)``
        Draws one path of ``T`` losses from the model's predictive distributions.
    var, es : array_like, shape (T,)
        The model's VaR and ES forecasts on the same days.
    alpha : float
    n_sims : int
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    ndarray, shape (n_sims,)
        ``Z2`` of each simulated path; critical value at level ``q`` is its ``q`` quantile.
    """
    v = np.asarray(var, dtype=np.float64)
    e = np.asarray(es, dtype=np.float64)
    a = _check_alpha(alpha)
    rng = np.random.default_rng(seed)
    T = v.shape[0]
    out = np.empty(int(n_sims))
    for s in range(int(n_sims)):
        lo = np.asarray(sample_losses(rng, T), dtype=np.float64)
        exc = lo > v
        out[s] = 1.0 - np.sum(lo[exc] / e[exc]) / (T * a)
    return out


def normal_loss_sampler(sigma: ArrayLike) -> Callable[[np.random.Generator, int], FloatArray]:
    """Sampler of ``L_t ~ N(0, sigma_t^2)`` for :func:`simulate_z2_null` (shape (T,))."""
    s = np.asarray(sigma, dtype=np.float64)

    def draw(rng: np.random.Generator, T: int) -> FloatArray:
        return np.asarray(rng.standard_normal(T) * s[:T], dtype=np.float64)

    return draw


@dataclass(frozen=True)
class DuEscanciano:
    """Du-Escanciano (2017) ES backtests on cumulative violations ``H_t``.

    ``u_es`` ~ N(0, 1) with its two-sided p-value; ``c_es`` ~ chi2(m) with its p-value.
    """

    h_mean: float
    u_es: float
    u_p_value: float
    c_es: float
    c_p_value: float
    lags: int


def cumulative_violations(u: ArrayLike, alpha: float) -> FloatArray:
    """``H_t = (alpha - u_t) / alpha * 1{u_t <= alpha}``, shape (T,)."""
    a = _check_alpha(alpha)
    uu = np.asarray(u, dtype=np.float64)
    if uu.ndim != 1 or uu.shape[0] == 0 or np.any(~((uu >= 0.0) & (uu <= 1.0))):
        raise InputError("u", "must be a non-empty 1-D series of probabilities in [0, 1]")
    return np.where(uu <= a, (a - uu) / a, 0.0)


def du_escanciano(u: ArrayLike, alpha: float, lags: int = 5) -> DuEscanciano:
    """Unconditional ``U_ES`` and conditional ``C_ES(m)`` tests.

    ``u_t = F_t(-L_t)`` is the model CDF of the realised P&lo (small = large loss).
    ``U_ES = sqrt(T)(mean H - alpha/2) / sqrt(alpha(1/3 - alpha/4))``;
    ``e_t = H_t - alpha/2`` (centred on ``alpha/2``, not the sample mean),
    ``rho_j = [sum_{t>j} e_t e_{t-j} / (T-j)] / [sum e_t^2 / T]``,
    ``C_ES(m) = T sum_{j<=m} rho_j^2``.
    """
    a = _check_alpha(alpha)
    H = cumulative_violations(u, a)
    T = H.shape[0]
    m = int(lags)
    if not 1 <= m < T:
        raise InputError("lags", f"must be in [1, T-1], got {lags!r}")
    hbar = float(H.mean())
    u_es = math.sqrt(T) * (hbar - a / 2.0) / math.sqrt(a * (1.0 / 3.0 - a / 4.0))
    e = H - a / 2.0
    denom = float(np.sum(e * e)) / T
    rho = np.array([float(np.sum(e[j:] * e[:-j])) / (T - j) / denom for j in range(1, m + 1)])
    c_es = float(T * np.sum(rho ** 2))
    return DuEscanciano(hbar, u_es, float(2.0 * stats.norm.sf(abs(u_es))), c_es,
                        float(stats.chi2.sf(c_es, m)), m)


@dataclass(frozen=True)
class CoverageSummary:
    """Exception statistics of one margin series against realised losses.

    ``coverage_ratio`` is the share of days on which margin covered the loss (1 - x/T);
    ``expected_coverage`` is ``1 - alpha``.
    """

    n_obs: int
    n_exceptions: int
    exception_rate: float
    coverage_ratio: float
    expected_coverage: float
    kupiec_lr: float
    kupiec_p: float
    christoffersen_ind_lr: float
    christoffersen_ind_p: float
    christoffersen_cc_lr: float
    christoffersen_cc_p: float
    zone: str
    zone_cumulative_probability: float
    plus_factor: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def coverage_summary(exceptions: ArrayLike, alpha: float) -> CoverageSummary:
    """Counts, coverage ratio, Kupiec, Christoffersen and traffic light of an indicator series."""
    i = _indicators(exceptions)
    T = int(i.shape[0])
    if T == 0:
        raise InputError("exceptions", "no observations")
    x = int(i.sum())
    pof = kupiec_pof(T, x, alpha)
    if T >= 2:
        ind = christoffersen_independence(i)
        cc = _chi2(pof.lr + ind.lr, 2)
    else:
        ind = cc = LRTest(math.nan, 1, math.nan)
    tl = traffic_light(x, T, alpha)
    return CoverageSummary(T, x, x / T, 1.0 - x / T, 1.0 - float(alpha), pof.lr, pof.p_value,
                           ind.lr, ind.p_value, cc.lr, cc.p_value, tl.zone,
                           tl.cumulative_probability, tl.plus_factor)
