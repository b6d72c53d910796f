"""``dynamic``: the flagship margin, a scenario core plus APC, stress and add-ons.

Everything is set in one file (``configs/models/dynamic.toml``, or a calibrated copy in
``configs/calibrated/``). On the as-of day ``T``:

1. **core** ``M``: ``fhs`` or ``mc`` scenario risk (ES 0.975 by default, scaled).
2. **APC** (EMIR Art. 28): ``A = (1 - w) M + w M_stress`` with ``M_stress`` the same measure
   on the designated stressed periods' returns (those ended by ``T``); then the 10-year floor
   ``A = max(A, M_10y)``, ``M_10y`` the measure on the core scenarios rescaled from today's vol to
   the 10-year sample vol; then an optional static buffer ``A *= 1 + b``. The buffer with
   release and the speed limit need the margin path: :meth:`DynamicModel.margin_path`.
3. **stress**: worst loss over the stress library (crash windows ended by ``T``, hypothetical
   shocks); ``floor_fraction`` of it floors the requirement: ``C = max(A, f * S)``.
4. **add-ons** (each its own component): liquidity (square-root impact on net delta per
   underlying plus option half-spreads on net vega), concentration (net size against ADV),
   funding (stressed funding of perps over the MPOR).

``IM = C + liquidity + concentration + funding``; the components ``core``, ``apc_adjustment``
(``A - M``), ``stress_floor`` (``C - A``) and the three add-ons add up to IM. MM = ``mm_fraction
* IM``. Before add-ons IM is positively homogeneous in position size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.addons.concentration import concentration_addon, size_ratio
from marginproof.addons.funding import FundingStats, funding_addon, funding_stats
from marginproof.addons.liquidity import sqrt_impact_cost
from marginproof.apc.tools import TEN_YEARS_DAYS, buffer_with_release
from marginproof.errors import InputError
from marginproof.instruments.portfolio import Portfolio
from marginproof.instruments.resolved import ResolvedBook, resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models._history import (
    CoreRisk,
    HistoryProvider,
    ScenarioRiskMixin,
    _num,
    tail_risk,
)
from marginproof.models.fhs import FHSModel, build_scenario_result
from marginproof.models.montecarlo import MCModel
from marginproof.models.result import MarginResult, WorstScenario, position_greeks_usd
from marginproof.risk.history import DAY, MarketHistory, asof_date
from marginproof.scenarios.fhs import historical_scenario_set
from marginproof.scenarios.sets import ScenarioSet
from marginproof.scenarios.stress import (
    historical_stress_set,
    hypothetical_stress_set,
    parse_shocks,
    parse_windows,
    window_dates,
)

FloatArray = NDArray[np.float64]
_CORES: dict[str, type[ScenarioRiskMixin]] = {"fhs": FHSModel, "mc": MCModel}
Num = Any  # float or ndarray (the functions below broadcast)

#: Order in which the requirement is built; ``binding_component`` names the term that set it.
BINDING_TERMS = ("core", "stressed_weight", "floor_10y", "stress_floor")


def apc_requirement(m_core: Num, m_stress: Num | None, m_floor: Num | None,
                    stressed_weight: float, static_buffer: float) -> Num:
    """EMIR Art. 28 APC on the core margin ``M`` (floats or arrays of any shape).

    ``A = max((1 - w) M + w M_stress, M_10y) * (1 + b)``; ``M_stress`` is skipped when ``None``
    or ``w = 0``, the floor when ``m_floor`` is ``None``.
    """
    a = m_core
    if m_stress is not None and stressed_weight > 0.0:
        a = (1.0 - stressed_weight) * m_core + stressed_weight * m_stress
    if m_floor is not None:
        a = np.maximum(a, m_floor)
    return a * (1.0 + static_buffer)


def stress_floor_requirement(a: Num, stress_loss: Num, floor_fraction: float) -> Num:
    """``C = max(A, f S)``: the stress floor on the APC margin."""
    return np.maximum(a, floor_fraction * stress_loss)


def binding_component(m_core: Num, m_stress: Num | None, m_floor: Num | None,
                      stress_loss: Num, stressed_weight: float, floor_fraction: float
                      ) -> NDArray[np.int8]:
    """Index into :data:`BINDING_TERMS` of the term that sets ``C`` (before the buffer).

    ``core`` when neither APC step raises ``M`` and the stress floor is below; ties go to the
    earlier term.
    """
    m = np.asarray(m_core, dtype=np.float64)
    out = np.zeros(m.shape, np.int8)
    a = m
    if m_stress is not None and stressed_weight > 0.0:
        blend = (1.0 - stressed_weight) * m + stressed_weight * np.asarray(m_stress)
        out = np.where(blend > m, 1, out).astype(np.int8)
        a = np.asarray(blend)
    if m_floor is not None:
        fl = np.asarray(m_floor, dtype=np.float64)
        out = np.where(fl > a, 2, out).astype(np.int8)
        a = np.maximum(a, fl)
    sf = floor_fraction * np.asarray(stress_loss, dtype=np.float64)
    return np.where(sf > a, 3, out).astype(np.int8)


class _ParentHistory:
    """History provider of the core model: its parent's history (a class, not a lambda, so
    the model pickles into an engine snapshot)."""

    __slots__ = ("parent",)

    def __init__(self, parent: ScenarioRiskMixin) -> None:
        self.parent = parent

    def __call__(self) -> MarketHistory:
        return self.parent.history


class DynamicModel(ScenarioRiskMixin):
    """Scenario core + APC + stress + add-ons (see module docstring)."""

    name = "dynamic"
    default_config = "models/dynamic.toml"

    def __init__(self, params: Mapping[str, Any] | None = None,
                 history: MarketHistory | None = None,
                 history_provider: HistoryProvider | None = None) -> None:
        super().__init__(params, history, history_provider)
        method = str(self.params["core"]["method"])
        inner = {k: v for k, v in self.params.items()
                 if k in ("meta", "fhs", "mc", "risk", "iv", "maintenance")}
        self.core_model: ScenarioRiskMixin = _CORES[method](inner, None, _ParentHistory(self))
        self.apc = self.params.get("apc", {})
        self.stress = self.params.get("stress", {})
        self.addons = self.params.get("addons", {})
        self._windows = parse_windows(self.stress.get("historical", []), "params.stress.historical")
        self._shocks = parse_shocks(self.stress.get("hypothetical", []),
                                    "params.stress.hypothetical")
        self._stressed = parse_windows(self.apc.get("stressed_periods", []),
                                       "params.apc.stressed_periods")

    def _validate(self, params: Mapping[str, Any]) -> None:
        super()._validate(params)
        core = params.get("core")
        if not isinstance(core, Mapping) or core.get("method") not in _CORES:
            raise InputError("params.core.method", f"must be one of {sorted(_CORES)}")
        w = _num(params, "apc", "stressed_weight", 0.0, 1.0, 0.25)
        if 0.0 < w < 0.25:
            raise InputError("params.apc.stressed_weight",
                             "EMIR Art. 28(1)(b) needs >= 0.25 (or 0 to disable)")
        _num(params, "apc", "static_buffer", 0.0, 1.0, 0.0)
        _num(params, "apc", "release_buffer", 0.0, 1.0, 0.25)
        _num(params, "apc", "rebuild_speed", 0.0, 10.0, 0.0)
        _num(params, "stress", "floor_fraction", 0.0, 1.0, 0.0)
        addons = params.get("addons", {})
        if not isinstance(addons, Mapping):
            raise InputError("params.addons", "must be a table")
        for sec, key, lo, hi, default in (
                ("liquidity", "y", 0.0, 100.0, 1.0), ("liquidity", "adv_days", 1, 3650, 30),
                ("liquidity", "option_half_spread_vol_points", 0.0, 100.0, 0.0),
                ("concentration", "threshold", 0.0, 10.0, 0.01),
                ("concentration", "slope", 0.0, 100.0, 1.0),
                ("funding", "conf", 0.5, 0.9999, 0.99), ("funding", "lookback", 1, 100_000, 1095),
                ("funding", "n_expected", 1, 100_000, 90)):
            _num({f"addons.{sec}": addons.get(sec, {})}, f"addons.{sec}", key, lo, hi, default)

    # -- delegation to the core model ----------------------------------------------------------
    def scenario_set(self, underlyings: tuple[str, ...], asof: np.datetime64) -> ScenarioSet:
        return self.core_model.core_set(underlyings, asof)

    def core_set(self, underlyings: tuple[str, ...], asof: np.datetime64) -> ScenarioSet:
        return self.core_model.core_set(underlyings, asof)

    @property
    def lam(self) -> float:
        sec = "fhs" if isinstance(self.core_model, FHSModel) else "mc"
        return float(self.params[sec]["lambda"])

    # -- APC ------------------------------------------------------------------------------------
    def sigma_10y(self, underlying: str, asof: np.datetime64) -> tuple[float, int]:
        """Sample std (ddof 1) of the last 3652 daily log returns up to ``asof`` and the count.

        BTC uses the Bitstamp/Coinbase history, extended with Binance returns after its end;
        others use their Binance history (shorter than 10 years: the count says so).
        """
        def build() -> tuple[float, int]:
            n_days = int(self.apc.get("floor_lookback_days", TEN_YEARS_DAYS))
            spot = self.history.close_series(underlying).upto(asof)
            d_s, r_s = spot.log_returns()
            long = self.history.long_closes.get(underlying)
            if long is not None:
                d_l, r_l = long.upto(asof).log_returns()
                after = d_s > (d_l[-1] if d_l.size else np.datetime64("1970-01-01"))
                r = np.concatenate([r_l, r_s[after]])
            else:
                r = r_s
            r = r[-n_days:]
            if r.shape[0] < 2:
                raise InputError("market.timestamp", f"no history for the {underlying} floor")
            return float(np.std(r, ddof=1)), int(r.shape[0])
        out: tuple[float, int] = self.cached(("sigma10y", underlying, str(asof)), build)
        return out

    def floor_set(self, core: ScenarioSet, asof: np.datetime64) -> ScenarioSet:
        """Core scenarios rescaled from ``sigma_next`` to the 10-year vol, per underlying."""
        sn = core.info.get("sigma_next", {})
        scale = np.array([self.sigma_10y(u, asof)[0] / float(sn[u]) for u in core.underlyings])
        return ScenarioSet(core.underlyings, core.labels, core.log_returns * scale[None, :],
                           core.iv_log_changes, core.horizon_applied, {"method": "floor_10y"})

    def stressed_period_set(self, underlyings: tuple[str, ...], asof: np.datetime64
                            ) -> ScenarioSet:
        def build() -> ScenarioSet:
            days, _ = window_dates(self._stressed, asof)
            paths = self.factor_paths(underlyings, self.lam)
            return historical_scenario_set(paths, underlyings, days, "stressed ", 1)
        key = ("stressed", str(asof), tuple(sorted(underlyings)))
        out: ScenarioSet = self.cached(key, build)
        return out

    def stress_sets(self, underlyings: tuple[str, ...], asof: np.datetime64
                    ) -> tuple[ScenarioSet, ScenarioSet]:
        def build() -> tuple[ScenarioSet, ScenarioSet]:
            paths = self.factor_paths(underlyings, self.lam)
            return (historical_stress_set(paths, underlyings, self._windows, asof,
                                          self.mpor_days),
                    hypothetical_stress_set(underlyings, self._shocks))
        key = ("stress", str(asof), tuple(sorted(underlyings)))
        out: tuple[ScenarioSet, ScenarioSet] = self.cached(key, build)
        return out

    # -- add-ons --------------------------------------------------------------------------------
    def adv(self, underlying: str, asof: np.datetime64) -> float:
        liq = self.addons.get("liquidity", {})
        n = int(liq.get("adv_days", 30))
        vol = self.history.volumes.get(underlying)
        if vol is None or len(vol.upto(asof)) == 0:
            raise InputError("history.volumes", f"no volume history for {underlying}")
        v = vol.upto(asof).values[-n:]
        return max(float(np.mean(v)), 1e-12)

    def funding_stats_for(self, underlying: str, asof: np.datetime64) -> FundingStats:
        """Funding statistics from the settlements before the end of ``asof``.

        The underlying's own series (else ``fallback``'s); settlements before its first one
        come from ``backfill`` (a longer series, e.g. BitMEX XBTUSD) when configured, so the
        lookback is full from the backfill's start. No settlement at all: ``InputError``.
        """
        def build() -> FundingStats:
            f = self.addons.get("funding", {})
            fund = self.history.funding
            src = underlying if underlying in fund else str(f.get("fallback", "BTC"))
            if src not in fund:
                raise InputError("history.funding", f"no funding history for {underlying}")
            cutoff = (asof + DAY).astype("datetime64[s]")
            rates = fund[src].before(cutoff).rates
            back = f.get("backfill")
            if back is not None and str(back) in fund and len(fund[src].times):
                first = fund[src].times[0]
                b = fund[str(back)].before(min(cutoff, first))
                rates = np.concatenate([b.rates, rates])
            return funding_stats(rates, int(f.get("lookback", 1095)),
                                 int(f.get("n_expected", 90)), float(f.get("conf", 0.99)))
        out: FundingStats = self.cached(("funding", underlying, str(asof)), build)
        return out

    def addon_components(self, book: ResolvedBook, market: MarketSnapshot, asof: np.datetime64,
                         sset: ScenarioSet, pnl: FloatArray) -> tuple[dict[str, float],
                                                                     dict[str, Any]]:
        """Liquidity, concentration and funding add-ons (USD) and their intermediates."""
        h = self.mpor_days
        greeks = position_greeks_usd(book)  # (7, n_pos): delta_coin, delta_usd, ..., vega
        liq_cfg = self.addons.get("liquidity", {})
        con_cfg = self.addons.get("concentration", {})
        fun_cfg = self.addons.get("funding", {})
        sigma_next = sset.info.get("sigma_next", {})
        comps = {"liquidity": 0.0, "concentration": 0.0, "funding": 0.0}
        det: dict[str, Any] = {"liquidity": {}, "concentration": {}, "funding": {}}
        for i, u in enumerate(book.underlyings):
            m = book.underlying_idx == i
            q = float(greeks[0, m].sum())
            vega = float(greeks[3, m].sum())
            price = market.index(u)
            sd = float(sigma_next.get(u, 0.0))
            adv = self.adv(u, asof)
            if liq_cfg.get("enabled", True):
                spreads = liq_cfg.get("spread_rel", {})
                s = float(spreads.get(u, spreads.get("default", 0.0)))
                y = float(liq_cfg.get("y", 1.0))
                cost_d = float(sqrt_impact_cost(q, price, s, sd, adv, y, h))
                cost_v = abs(vega) * float(liq_cfg.get("option_half_spread_vol_points", 0.0))
                comps["liquidity"] += cost_d + cost_v
                det["liquidity"][u] = {"net_delta_coin": q, "adv_coin": adv, "sigma_daily": sd,
                                       "spread_rel": s, "y": y, "delta_cost_usd": cost_d,
                                       "net_vega_usd_per_vol_point": vega,
                                       "vega_cost_usd": cost_v}
            if con_cfg.get("enabled", True):
                ratio = float(size_ratio(q, adv, h))
                base = tail_risk(pnl[:, m], self.conf_var, self.conf_es, self.measure_name,
                                 self.scaling).measure if pnl.shape[0] else 0.0
                add = float(concentration_addon(base, ratio, float(con_cfg.get("threshold", 0.01)),
                                                float(con_cfg.get("slope", 1.0))))
                comps["concentration"] += add
                det["concentration"][u] = {"size_ratio_adv": ratio, "standalone_margin": base,
                                           "add_on": add}
        if fun_cfg.get("enabled", True):
            for j in np.flatnonzero(book.kind == 2):  # perpetuals
                u = book.underlyings[book.underlying_idx[j]]
                st = self.funding_stats_for(u, asof)
                notional = float(greeks[1, j])
                cur = market.funding_rates.get(book.names[j])
                exp_c, str_c = funding_addon(notional, st, h, cur)
                comps["funding"] += str_c
                det["funding"][book.names[j]] = {
                    "notional_usd": notional, "expected_cost_usd": exp_c,
                    "stressed_cost_usd": str_c, "expected_rate_8h": st.expected_rate,
                    "stressed_long_rate_8h": st.stressed_long_rate,
                    "stressed_short_rate_8h": st.stressed_short_rate}
        return comps, det

    def apc_components(self, book: ResolvedBook, core: CoreRisk, asof: np.datetime64
                       ) -> dict[str, Any]:
        """Base margin ``M``, ``(1 - w) M + w M_stress`` and ``M_10y`` (those enabled)."""
        unds = tuple(sorted(book.underlyings))
        m_core = core.requirement
        out: dict[str, Any] = {"base": m_core}
        w = float(self.apc.get("stressed_weight", 0.25))
        sset = self.stressed_period_set(unds, asof) if w > 0.0 and len(book) else None
        if sset is not None and len(sset):  # skipped until a stressed period has ended
            m_stress, _ = self.core_model.measure_of(book, self.core_model.revalue(book, sset))
            out["margin_stressed"] = m_stress
            out["stressed_weighted"] = (1.0 - w) * m_core + w * m_stress
            out["stressed_details"] = {
                "weight": w, "margin_stressed": m_stress, "n_stressed_scenarios": len(sset),
                "periods": [f"{p.name} {p.start}..{p.end}" for p in self._stressed
                            if p.end <= asof]}
        if bool(self.apc.get("floor_10y", True)) and len(book):
            fset = self.floor_set(core.sset, asof)
            m_floor, _ = self.core_model.measure_of(book, self.core_model.revalue(book, fset))
            out["floor_10y"] = m_floor
            out["floor_details"] = {
                "margin_floor_10y": m_floor,
                "sigma_10y": {u: self.sigma_10y(u, asof)[0] for u in unds},
                "n_returns": {u: self.sigma_10y(u, asof)[1] for u in unds}}
        return out

    # -- margin ---------------------------------------------------------------------------------
    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> MarginResult:
        book = resolve(portfolio, market)
        asof = asof_date(market.timestamp)
        core = self.core_model.core_risk(book, asof)
        unds = tuple(sorted(book.underlyings))
        m_core = core.requirement
        details: dict[str, Any] = {"core_method": self.params["core"]["method"]}
        apc = self.apc_components(book, core, asof)
        if "stressed_weighted" in apc:
            details["apc_stressed"] = apc["stressed_details"]
        if "floor_10y" in apc:
            details["apc_floor"] = apc["floor_details"]
        w = float(self.apc.get("stressed_weight", 0.25))
        b = float(self.apc.get("static_buffer", 0.0))
        a = float(apc_requirement(m_core, apc.get("margin_stressed"), apc.get("floor_10y"),
                                  w, b))
        # stress
        c = a
        worst_extra: list[WorstScenario] = []
        if len(book):
            hist, hyp = self.stress_sets(unds, asof)
            s_loss, s_label, s_idx = 0.0, "-", 0
            for st in (hist, hyp):
                if len(st):
                    losses = -self.core_model.revalue(book, st).sum(axis=1)
                    j = int(np.argmax(losses))
                    if losses[j] > s_loss:
                        s_loss, s_label, s_idx = float(losses[j]), st.labels[j], j
            f = float(self.stress.get("floor_fraction", 0.0))
            details["stress"] = {"worst_loss": s_loss, "scenario": s_label,
                                 "floor_fraction": f,
                                 "n_historical": len(hist), "n_hypothetical": len(hyp)}
            c = float(stress_floor_requirement(a, s_loss, f))
            if c > a:
                worst_extra.append(WorstScenario(s_label, s_idx, s_loss, "stress"))
            details["binding"] = BINDING_TERMS[int(binding_component(
                m_core, apc.get("margin_stressed"), apc.get("floor_10y"), s_loss, w, f))]
        comps_add, det_add = self.addon_components(book, market, asof, core.sset, core.pnl)
        details["addons"] = det_add
        im = c + sum(comps_add.values())
        components = {"core": m_core, "apc_adjustment": a - m_core, "stress_floor": c - a,
                      **comps_add}
        res = build_scenario_result(self, book, market, core, {}, details, im_override=im)
        # components of the dynamic model replace the core's scenario_risk entries
        return MarginResult(
            model=res.model, params_hash=res.params_hash,
            market_timestamp=res.market_timestamp, currency=res.currency,
            initial_margin=res.initial_margin, maintenance_margin=res.maintenance_margin,
            worst_scenarios=res.worst_scenarios + tuple(worst_extra),
            scenario_labels=res.scenario_labels, scenario_pnl=res.scenario_pnl,
            position_names=res.position_names, contributions=res.contributions,
            greeks=res.greeks, components=components, details=res.details,
        )

    def margin_path(self, portfolio: Portfolio, markets: Sequence[MarketSnapshot]
                    ) -> tuple[FloatArray, FloatArray]:
        """IM on consecutive days and the called margin after the buffer with release.

        Returns
        -------
        base : ndarray, shape (n_days,)
            :meth:`margin` IM per market snapshot.
        called : ndarray, shape (n_days,)
            ``buffer_with_release(base, release_buffer, rebuild_speed)``.
        """
        base = np.array([self.margin(portfolio, m).initial_margin for m in markets])
        called = buffer_with_release(base, float(self.apc.get("release_buffer", 0.25)),
                                     float(self.apc.get("rebuild_speed", 0.0)))
        return base, called
