"""The risk-factor dynamics a forecast simulates: the margin model's own, or a stated reference.

For every underlying two factors, as in the models' scenario sets
(:class:`marginproof.scenarios.sets.ScenarioSet`): the log return of the index and the log change
of the ATM implied vol. A :class:`FactorDynamics` holds

* the model's **one-day joint standardised residuals** (the scenario set of the as-of day ``T``
  divided by its one-day vols ``sigma_next``): filtered historical residuals for ``fhs`` and a
  ``dynamic`` model on an FHS core, the t-copula draws for ``mc``. A forecast day draws one
  residual vector from them (bootstrap), so the one-day distribution of every factor and their
  dependence are the model's own;
* the one-day vols of the factors at ``T`` and the model's **vol recursion** (EWMA with the
  model's decay, or the GARCH(1,1) of ``mc`` with ``marginal = "garch_t"``), applied once per
  UTC day rollover on the simulated daily return, as the model itself would on day ``T + 1``;
* the historical 8-hour changes of the perpetual funding rate (bootstrapped in the funding
  simulation).

Models with no dynamics of their own (``grid``, ``standard``, the exchange presets) are forecast
under the dynamics of the ``fhs`` model with its shipped parameters (:func:`reference_dynamics`);
the result says so. :func:`gaussian_dynamics` (normal one-day residuals, no vol updates) is the
closed-form reference of the golden tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.risk.history import DAY

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class VolUpdate:
    """One-day update of a factor's vol: ``ewma``, ``garch`` or ``none``.

    EWMA: ``s'^2 = lam s^2 + (1 - lam) x^2`` (RiskMetrics, the models' recursion). GARCH(1,1)
    in arch's percent units: ``s'^2 = omega + alpha (100 x - mu)^2 + beta s^2``.
    """

    kind: str = "none"
    lam: float = 0.94
    omega: float = 0.0
    alpha: float = 0.0
    beta: float = 0.0
    mu_pct: float = 0.0

    def next_sigma(self, sigma: FloatArray, x: FloatArray) -> FloatArray:
        """Vol for the next day after the factor moved by ``x`` (decimal), broadcast."""
        if self.kind == "ewma":
            return np.asarray(np.sqrt(self.lam * sigma * sigma + (1.0 - self.lam) * x * x),
                              dtype=np.float64)
        if self.kind == "garch":
            s_pct = 100.0 * sigma
            e = 100.0 * x - self.mu_pct
            v = self.omega + self.alpha * e * e + self.beta * s_pct * s_pct
            return np.asarray(np.sqrt(np.maximum(v, 0.0)) / 100.0, dtype=np.float64)
        return np.asarray(sigma, dtype=np.float64)


@dataclass(frozen=True)
class FactorDynamics:
    """Dynamics of the return and ATM-IV factors of some underlyings (see module docstring).

    Attributes
    ----------
    source : str
        Where the dynamics come from (``"fhs"``, ``"dynamic (fhs core)"``, ``"gaussian"`` ...).
    underlyings : tuple of str, length n_u
    residuals : ndarray, shape (n_pool, 2 n_u), or None
        One-day standardised residuals, columns ``[returns..., iv changes...]``; None draws
        standard normals with correlation ``corr``.
    corr : ndarray, shape (2 n_u, 2 n_u)
        Correlation of the residuals (also used for the intraday bridge noise).
    sigma : ndarray, shape (2 n_u,)
        One-day vols at the as-of day (returns, then IV changes).
    updates : tuple of VolUpdate, length 2 n_u
    asof : numpy.datetime64 or None
        As-of day ``T`` of the model (None for dynamics not tied to history).
    last_close : ndarray, shape (n_u,)
        Close of ``T`` (USD); NaN when the history has no close on ``T`` (the model would see
        no new return at the next rollover either: vol updates are then off).
    iv_proxy_next : tuple of bool, length n_u
        The model's IV factor for the next day is its EWMA proxy ``proxy_scale ln(s'/s)``
        (no IV index quoted on ``T``), not the simulated IV change.
    proxy_scale : float
    iv_shocks : bool
        The model shocks implied vols (otherwise the IV factor is held).
    funding_changes : Mapping[str, ndarray]
        Underlying -> historical 8-hour changes of the funding rate (bootstrapped).
    info : Mapping[str, Any]
    """

    source: str
    underlyings: tuple[str, ...]
    residuals: FloatArray | None
    corr: FloatArray
    sigma: FloatArray
    updates: tuple[VolUpdate, ...]
    asof: np.datetime64 | None = None
    last_close: FloatArray = field(default_factory=lambda: np.zeros(0))
    iv_proxy_next: tuple[bool, ...] = ()
    proxy_scale: float = 0.77
    iv_shocks: bool = True
    funding_changes: Mapping[str, FloatArray] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = 2 * len(self.underlyings)
        if self.residuals is not None:
            r = np.asarray(self.residuals, dtype=np.float64)
            if r.ndim != 2 or r.shape[1] != n or r.shape[0] < 1 or not np.all(np.isfinite(r)):
                raise InputError("dynamics.residuals", f"need a finite (n, {n}) array")
            object.__setattr__(self, "residuals", r)
        c = np.asarray(self.corr, dtype=np.float64)
        if c.shape != (n, n):
            raise InputError("dynamics.corr", f"need shape {(n, n)}")
        s = np.asarray(self.sigma, dtype=np.float64)
        if s.shape != (n,) or not np.all(np.isfinite(s)) or np.any(s < 0):
            raise InputError("dynamics.sigma", "need finite non-negative vols, one per factor")
        if len(self.updates) != n:
            raise InputError("dynamics.updates", f"need {n} vol updates")
        lc = np.asarray(self.last_close, dtype=np.float64)
        if lc.shape != (len(self.underlyings),):
            lc = np.full(len(self.underlyings), np.nan)
        object.__setattr__(self, "last_close", lc)
        if len(self.iv_proxy_next) != len(self.underlyings):
            object.__setattr__(self, "iv_proxy_next", (False,) * len(self.underlyings))
        object.__setattr__(self, "corr", c)
        object.__setattr__(self, "sigma", s)

    @property
    def n_factors(self) -> int:
        return 2 * len(self.underlyings)

    def column(self, underlying: str) -> int:
        try:
            return self.underlyings.index(underlying)
        except ValueError:
            raise InputError("positions", f"the forecast dynamics do not cover {underlying} "
                             f"(they cover {', '.join(self.underlyings)})") from None

    def draw(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` one-day residual vectors, shape (n, 2 n_u)."""
        if self.residuals is None:
            g = rng.standard_normal((n, self.n_factors))
            return np.asarray(g @ sqrt_psd(self.corr).T, dtype=np.float64)
        idx = rng.integers(0, self.residuals.shape[0], size=n)
        return np.asarray(self.residuals[idx], dtype=np.float64)

    def subset(self, underlyings: tuple[str, ...]) -> FactorDynamics:
        """The same dynamics restricted to some underlyings (columns re-ordered)."""
        cols = [self.column(u) for u in underlyings]
        nu = len(self.underlyings)
        full = cols + [nu + c for c in cols]
        return FactorDynamics(
            self.source, tuple(underlyings),
            None if self.residuals is None else self.residuals[:, full],
            self.corr[np.ix_(full, full)], self.sigma[full],
            tuple(self.updates[i] for i in full), self.asof, self.last_close[cols],
            tuple(self.iv_proxy_next[c] for c in cols), self.proxy_scale, self.iv_shocks,
            {u: v for u, v in self.funding_changes.items() if u in underlyings}, self.info)


def sqrt_psd(c: FloatArray) -> FloatArray:
    """A square root ``A`` with ``A A^T = c`` of a (possibly singular) correlation matrix.

    Why not Cholesky: factor columns can be perfectly correlated (two underlyings whose IV
    factor is the same index, for instance), which makes ``c`` singular; the symmetric
    eigen-decomposition with negative eigenvalues clipped to zero handles it.
    """
    w, v = np.linalg.eigh(0.5 * (c + c.T))
    return np.asarray(v * np.sqrt(np.maximum(w, 0.0))[None, :], dtype=np.float64)


def _corr(x: FloatArray) -> FloatArray:
    if x.shape[0] < 2:
        return np.eye(x.shape[1])
    sd = x.std(axis=0)
    ok = sd > 0
    c = np.eye(x.shape[1])
    if ok.sum() >= 2:
        sub = np.corrcoef(x[:, ok], rowvar=False)
        c[np.ix_(ok, ok)] = np.nan_to_num(sub)
    np.fill_diagonal(c, 1.0)
    return np.asarray(c, dtype=np.float64)


def gaussian_dynamics(underlyings: tuple[str, ...], sigma_daily: FloatArray,
                      iv_sigma_daily: FloatArray | None = None,
                      corr: FloatArray | None = None) -> FactorDynamics:
    """Normal one-day residuals with fixed vols (no updates): the closed-form reference.

    Parameters
    ----------
    underlyings : tuple of str, length n_u
    sigma_daily : array, shape (n_u,)
        Daily vol of each log return.
    iv_sigma_daily : array, shape (n_u,), optional
        Daily vol of each ATM-IV log change (default 0: vols held).
    corr : array, shape (2 n_u, 2 n_u), optional
    """
    n = len(underlyings)
    s = np.concatenate([np.asarray(sigma_daily, float).reshape(n),
                        np.zeros(n) if iv_sigma_daily is None
                        else np.asarray(iv_sigma_daily, float).reshape(n)])
    c = np.eye(2 * n) if corr is None else np.asarray(corr, dtype=np.float64)
    return FactorDynamics("gaussian", tuple(underlyings), None, c, s,
                          (VolUpdate(),) * (2 * n), None, np.full(n, np.nan), (False,) * n,
                          iv_shocks=iv_sigma_daily is not None)


def history_dynamics(model: Any, underlyings: tuple[str, ...], asof: np.datetime64
                     ) -> FactorDynamics:
    """Dynamics of a history-driven model (``fhs``, ``mc``, ``dynamic``) as of ``asof``.

    Uses the model's own one-day scenario set (:meth:`core_set`), its ``sigma_next`` values,
    its EWMA decay or GARCH parameters, its IV series mapping and its funding history.
    """
    core = getattr(model, "core_model", model)
    unds = tuple(sorted(underlyings))
    sset = core.core_set(unds, asof)
    info = dict(sset.info)
    sn, ivn = info.get("sigma_next", {}), info.get("iv_sigma_next", {})
    sig = np.array([float(sn[u]) for u in unds] + [float(ivn[u]) for u in unds])
    if np.any(sig <= 0.0):
        raise InputError("market.timestamp", "a factor has zero volatility at the as-of date")
    z = np.column_stack([sset.log_returns, sset.iv_log_changes]) / sig[None, :]
    lam = float(core.lam)
    method = str(info.get("method"))
    marginals = info.get("marginals", {}) if method == "mc" else {}
    ups: list[VolUpdate] = []
    for u in unds:
        m = marginals.get(u, {}) if isinstance(marginals, Mapping) else {}
        if method == "mc" and "omega" in m:
            ups.append(VolUpdate("garch", lam, float(m["omega"]), float(m["alpha"]),
                                 float(m["beta"]), float(m["mu_pct"])))
        else:
            ups.append(VolUpdate("ewma", lam))
    ups += [VolUpdate("ewma", lam)] * len(unds)
    hist = core.history
    last = np.full(len(unds), np.nan)
    for i, u in enumerate(unds):
        s = hist.close_series(u).upto(asof)
        if len(s) and s.dates[-1] == asof:
            last[i] = float(s.values[-1])
    iv_cfg = core.params.get("iv", {})
    series = iv_cfg.get("series", {}) if isinstance(iv_cfg, Mapping) else {}
    proxy_next = []
    for u in unds:
        name = series.get(u) if isinstance(series, Mapping) else None
        lv = hist.atm_iv.get(str(name)) if name is not None else None
        proxy_next.append(lv is None or len(lv.upto(asof)) == 0
                          or lv.upto(asof).dates[-1] != asof)
    scale = float(iv_cfg.get("proxy_scale", 0.77)) if isinstance(iv_cfg, Mapping) else 0.77
    fund: dict[str, FloatArray] = {}
    cutoff = (asof + DAY).astype("datetime64[s]")
    for u in unds:
        src = u if u in hist.funding else ("BTC" if "BTC" in hist.funding else None)
        if src is None:
            continue
        r = hist.funding[src].before(cutoff).rates[-1096:]
        if r.shape[0] >= 2:
            fund[u] = np.diff(r)
    src_name = model.name if core is model else f"{model.name} ({core.name} core)"
    return FactorDynamics(src_name, unds, z, _corr(z), sig, tuple(ups), asof, last,
                          tuple(proxy_next), scale, bool(core.iv_shocks), fund,
                          {"n_residuals": int(z.shape[0]), "method": method,
                           "lambda": lam, "sigma_next": {u: float(sn[u]) for u in unds},
                           "iv_sigma_next": {u: float(ivn[u]) for u in unds}})


def reference_dynamics(underlyings: tuple[str, ...], asof: np.datetime64,
                       model: Any | None = None) -> FactorDynamics:
    """FHS dynamics (shipped ``fhs`` parameters) for models without their own."""
    if model is None:
        from marginproof.models.fhs import FHSModel

        model = FHSModel()
    d = history_dynamics(model, underlyings, asof)
    return FactorDynamics(f"{d.source} (reference: the margin model has no dynamics of its "
                          "own)", d.underlyings, d.residuals, d.corr, d.sigma, d.updates,
                          d.asof, d.last_close, d.iv_proxy_next, d.proxy_scale, d.iv_shocks,
                          d.funding_changes, d.info)

