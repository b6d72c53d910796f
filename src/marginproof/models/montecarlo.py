"""``mc``: Monte Carlo margin with a Student-t copula on EWMA or GARCH(1,1)-t marginals.

Method (``docs/models/mc.md``): for every underlying of the configured universe with enough
history at ``T``, two risk factors: the daily log return and the ATM-IV log change. Returns are
standardised by GARCH(1,1)-t (``arch``, refitted every ``refit_days`` on a fixed window ending on
a refit date <= T, then filtered to T with frozen parameters) or by EWMA; IV changes by EWMA.
Marginals are Student-t (GARCH's own, or fitted with location 0); the dependence is a t copula
with the shrunk EWMA correlation of the residuals and ML degrees of freedom
(:mod:`marginproof.scenarios.montecarlo`). ``n_batches`` scrambled Sobol batches of
``2**log2_points`` antithetic pairs give the scenarios and the standard errors. The whole universe
is simulated once per date, so every book on that date sees the same joint scenarios.
IM = ``scaling * ES_conf_es`` (or VaR); MM = ``mm_fraction * IM``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from marginproof.errors import InputError
from marginproof.instruments.portfolio import Portfolio
from marginproof.instruments.resolved import resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models._history import ScenarioRiskMixin, _num
from marginproof.models.fhs import build_scenario_result
from marginproof.models.result import MarginResult
from marginproof.risk.garch import GarchFit, fit_garch_t, garch_filter
from marginproof.risk.history import asof_date
from marginproof.scenarios.montecarlo import (
    FactorResiduals,
    TMarginal,
    fit_copula,
    mc_var_es,
    simulate_factors,
)
from marginproof.scenarios.sets import ScenarioSet

EPOCH = np.datetime64("1970-01-01", "D")


def refit_anchor(asof: np.datetime64, refit_days: int) -> np.datetime64:
    """Latest refit day <= ``asof``: days since 1970-01-01 divisible by ``refit_days``."""
    days = int((asof - EPOCH).astype(int))
    return EPOCH + np.timedelta64(days - days % int(refit_days), "D")


class MCModel(ScenarioRiskMixin):
    """Monte Carlo t-copula margin (see module docstring)."""

    name = "mc"
    default_config = "models/mc.toml"
    section = "mc"

    def _validate(self, params: Mapping[str, Any]) -> None:
        super()._validate(params)
        p = params.get(self.section)
        if not isinstance(p, Mapping):
            raise InputError(f"params.{self.section}", "missing table")
        if p.get("marginal") not in ("ewma_t", "garch_t"):
            raise InputError(f"params.{self.section}.marginal", "must be 'ewma_t' or 'garch_t'")
        _num(params, self.section, "lambda", 0.5, 0.9999)
        for key, lo, hi in (("window", 100, 5000), ("garch_window", 250, 5000),
                            ("refit_days", 1, 365), ("n_batches", 2, 256),
                            ("log2_points", 4, 20), ("min_history", 31, 5000),
                            ("copula_window", 60, 5000)):
            v = p.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise InputError(f"params.{self.section}.{key}", f"integer in [{lo}, {hi}]")
        nu = p.get("copula_nu", "fit")
        if nu != "fit" and (not isinstance(nu, (int, float)) or not 2.05 <= float(nu) <= 200):
            raise InputError(f"params.{self.section}.copula_nu", "'fit' or a number in [2.05, 200]")
        _num(params, self.section, "shrinkage", 0.0, 1.0)
        if not isinstance(p.get("seed"), int):
            raise InputError(f"params.{self.section}.seed", "must be an integer")
        u = p.get("universe")
        if not isinstance(u, list) or not u or not all(isinstance(x, str) for x in u):
            raise InputError(f"params.{self.section}.universe", "non-empty list of underlyings")

    @property
    def mc(self) -> Mapping[str, Any]:
        return self.params[self.section]  # type: ignore[no-any-return]

    @property
    def lam(self) -> float:
        return float(self.mc["lambda"])

    def garch_fit(self, underlying: str, anchor: np.datetime64) -> GarchFit:
        """GARCH(1,1)-t on the ``garch_window`` returns up to the refit ``anchor`` (cached)."""
        def build() -> GarchFit:
            p = self.factor_paths((underlying,), self.lam)[underlying]
            n = p.index_of(anchor)
            w = int(self.mc["garch_window"])
            return fit_garch_t(p.log_returns[max(0, n - w):n])
        fit: GarchFit = self.cached(("garch", underlying, str(anchor)), build)
        return fit

    def _residuals(self, u: str, asof: np.datetime64) -> tuple[FactorResiduals,
                                                              FactorResiduals, dict[str, Any]]:
        p = self.factor_paths((u,), self.lam)[u]
        n = p.index_of(asof)
        w = int(self.mc["window"])
        lo = max(0, n - w)
        info: dict[str, Any] = {}
        if self.mc["marginal"] == "garch_t":
            anchor = refit_anchor(asof, int(self.mc["refit_days"]))
            fit = self.garch_fit(u, anchor)
            gw = int(self.mc["garch_window"])
            glo = max(0, n - gw)
            sig, s_next = garch_filter(p.log_returns[glo:n], fit)
            z = p.log_returns[glo:n] / sig
            ret = FactorResiduals(u, p.dates[glo:n], z, s_next, TMarginal.unit_variance(fit.nu))
            info = {"garch_refit_date": str(anchor), "mu_pct": fit.mu, "omega": fit.omega,
                    "alpha": fit.alpha, "beta": fit.beta, "nu": fit.nu,
                    "integrated": fit.integrated, "converged": fit.converged}
        else:
            z = p.log_returns[lo:n] / p.sigma[lo:n]
            ret = FactorResiduals(u, p.dates[lo:n], z, float(p.sigma[n]), TMarginal.fit(z))
            info = {"t_nu": ret.marginal.nu, "t_scale": ret.marginal.scale}
        zi = p.iv_changes[lo:n] / p.iv_sigma[lo:n]
        iv = FactorResiduals(f"{u}:iv", p.dates[lo:n], zi, float(p.iv_sigma[n]), TMarginal.fit(zi))
        return ret, iv, info

    def scenario_set(self, underlyings: tuple[str, ...], asof: np.datetime64) -> ScenarioSet:
        full = self.universe_set(asof, underlyings)
        return full.subset(underlyings)

    def universe_set(self, asof: np.datetime64, required: tuple[str, ...] = ()) -> ScenarioSet:
        """Scenarios of every universe underlying with enough history at ``asof`` (cached)."""
        mh = int(self.mc["min_history"])
        eligible = []
        for u in sorted(set(self.mc["universe"]) | set(required)):
            if u not in self.history.closes:
                continue
            n = self.factor_paths((u,), self.lam)[u].index_of(asof)
            if n >= mh:
                eligible.append(u)
        missing = [u for u in required if u not in eligible]
        if missing:
            raise InputError("market.timestamp",
                             f"not enough history (< {mh} returns) at {asof} for {missing}")
        key = ("universe", str(asof), tuple(eligible), self.scenario_seed(int(self.mc["seed"])))
        built = self.persisted(key, lambda: self._simulate(tuple(eligible), asof))
        return built

    def _simulate(self, unds: tuple[str, ...], asof: np.datetime64) -> ScenarioSet:
        rets, ivs, infos = [], [], {}
        for u in unds:
            r, v, info = self._residuals(u, asof)
            rets.append(r)
            ivs.append(v)
            infos[u] = info
        factors = rets + ivs
        nu_cfg = self.mc.get("copula_nu", "fit")
        cop = fit_copula(factors, int(self.mc["copula_window"]), self.lam,
                         float(self.mc["shrinkage"]), None if nu_cfg == "fit" else float(nu_cfg))
        x = simulate_factors(factors, cop, int(self.mc["n_batches"]),
                             int(self.mc["log2_points"]),
                             self.scenario_seed(int(self.mc["seed"])),
                             bool(self.mc.get("antithetic", True)),
                             bool(self.mc.get("quasi_random", True)))
        d = len(unds)
        labels = tuple(f"mc#{i}" for i in range(x.shape[0]))
        return ScenarioSet(
            unds, labels, x[:, :d], x[:, d:], False,
            {"method": "mc", "asof": str(asof), "marginal": self.mc["marginal"],
             "sigma_next": {f.name: f.sigma_next for f in rets},
             "iv_sigma_next": {f.name.split(":")[0]: f.sigma_next for f in ivs},
             "copula_nu": cop.nu, "copula_nu_fitted": cop.nu_fitted,
             "copula_n_obs": cop.n_obs, "copula_corr": cop.corr.tolist(),
             "copula_factors": list(cop.names), "marginals": infos,
             "n_batches": int(self.mc["n_batches"]),
             "seed": self.scenario_seed(int(self.mc["seed"]))},
        )

    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> MarginResult:
        book = resolve(portfolio, market)
        asof = asof_date(market.timestamp)
        core = self.core_risk(book, asof)
        extra: dict[str, Any] = {}
        if len(core.sset):
            est = mc_var_es(core.portfolio.losses, int(self.mc["n_batches"]), self.conf_var,
                            self.conf_es)
            extra["mc_standard_errors"] = {f"var_{self.conf_var:g}": est.var_se,
                                           f"es_{self.conf_es:g}": est.es_se}
        return build_scenario_result(self, book, market, core, {}, extra)
