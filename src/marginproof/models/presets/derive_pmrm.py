"""``derive-pmrm``: Derive (Lyra v2) portfolio margin risk manager, "PMRM_2" generation.

Follows ``exchange-presets.md`` section 1 (restating derivexyz/v2-core ``PMRMLib_2.sol`` and
``PMRM_2.sol``). One PMRM instance margins one underlying; all values in USD.

Engine (pure, on explicit inputs): :func:`evaluate_pmrm` takes a :class:`PMRMPortfolio`,
:class:`PMRMParams` and returns every intermediate the venue computes (per-expiry MtM, basis
contingency, vol-shock multipliers, static discounts, scenario P&L, contingencies) and Derive's
**signed** margin balances ``MM = worst*mmFactor - MMcont + MtM + cash`` and
``IM = worst*imFactor - MMcont - IMcont + MtM + cash`` (healthy iff >= 0).

Adapter: :class:`DerivePMRMModel` builds the inputs from a portfolio and market snapshot and
reports the requirements in the project's positive convention,
``initial_margin = MtM + cash - IM_signed`` (= ``-worst*imFactor + MMcont + IMcont``), keeping
the signed balances in ``details["derive_im_signed"]`` / ``details["derive_mm_signed"]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.instruments.contracts import InstrumentKind, Settlement
from marginproof.instruments.portfolio import Portfolio
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import BaseMarginModel
from marginproof.models.presets.common import (
    SECONDS_PER_DAY,
    SECONDS_PER_YEAR,
    NetPosition,
    b76,
    check_meta,
    expiry_key,
    flag,
    net_positions,
    number,
    preset_greeks,
    quoted_forward,
    require_mark,
    require_vol,
    risk_matrix,
    seconds_to_expiry,
    table,
    unsupported,
)
from marginproof.models.presets.inputs import MarketInputs, PortfolioInputs
from marginproof.models.result import MarginResult, WorstScenario

PRESET = "derive-pmrm"
VOL_SHOCKS = ("none", "up", "down", "linear", "abs")
SKEW_SHOCKS = ("linear", "abs")
THIRTY_DAYS_SECONDS = 30.0 * SECONDS_PER_DAY


# -- inputs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PMRMScenario:
    """One margin scenario: spot multiplier, vol shock direction, dampening factor."""

    spot_shock: float
    vol_shock: str
    dampening: float = 1.0

    @property
    def label(self) -> str:
        s = f"spot x{self.spot_shock:g}, vol {self.vol_shock}"
        return s if self.dampening == 1.0 else f"{s}, dampening {self.dampening:.6g}"


@dataclass(frozen=True)
class PMRMOption:
    """One option balance of an expiry (amount signed, coins)."""

    strike: float
    is_call: bool
    vol: float
    amount: float
    vol_confidence: float = 1.0
    name: str = ""


@dataclass(frozen=True)
class PMRMExpiry:
    """Options of one expiry with the feeds Derive reads for it.

    ``forward`` is the full forward ``F``; ``forward_fixed`` its already-fixed part (settlement
    averaging), so spot shocks move ``F - forward_fixed`` only. ``rate`` is the raw feed rate
    (negative rates are floored at 0 by the engine).
    """

    sec_to_expiry: float
    forward: float
    options: tuple[PMRMOption, ...]
    rate: float = 0.0
    forward_fixed: float = 0.0
    forward_confidence: float = 1.0
    rate_confidence: float = 1.0
    label: str = ""


@dataclass(frozen=True)
class PMRMCollateral:
    """A collateral balance with its per-asset PMRM parameters."""

    asset: str
    amount: float
    price: float
    confidence: float = 1.0
    risk_cancelling: bool = False
    mm_haircut: float = 0.0
    im_haircut: float = 0.0


@dataclass(frozen=True)
class PMRMPortfolio:
    """Everything one PMRM instance sees for a subaccount (USD)."""

    spot: float
    expiries: tuple[PMRMExpiry, ...] = ()
    collaterals: tuple[PMRMCollateral, ...] = ()
    cash: float = 0.0
    spot_confidence: float = 1.0
    stable_price: float = 1.0
    perp_position: float = 0.0
    perp_price: float = 0.0
    perp_confidence: float = 1.0
    perp_value: float = 0.0


_TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "vol_shock": ("vol_range_up", "vol_range_down", "short_term_power", "long_term_power",
                  "dte_floor_days", "min_vol_up_shock"),
    "margin": ("mm_factor", "im_factor", "long_base_static_discount", "long_rate_mult_scale",
               "long_rate_add_scale", "short_base_static_discount", "short_rate_mult_scale",
               "short_rate_add_scale"),
    "basis": ("scenario_spot_up", "scenario_spot_down", "add_factor", "mult_factor"),
    "other": ("peg_loss_threshold", "peg_loss_factor", "conf_threshold", "conf_margin",
              "mm_perp_percent", "im_perp_percent", "mm_option_percent", "im_option_percent"),
    "skew": ("linear_base_cap", "linear_c_base", "abs_base_cap", "abs_c_base", "min_k_star",
             "width_scale", "vol_param_static", "vol_param_scale"),
}
# (lo, hi) bounds, from PMRMLib_2's setters where it has them
_BOUNDS: dict[str, tuple[float, float]] = {
    "vol_range_up": (0, 10), "vol_range_down": (0, 10), "short_term_power": (0, 10),
    "long_term_power": (0, 10), "dte_floor_days": (0, 400), "min_vol_up_shock": (0, 20),
    "mm_factor": (0.5, 10), "im_factor": (0.5, 10), "long_base_static_discount": (0, 4),
    "long_rate_mult_scale": (0, 10), "long_rate_add_scale": (0, 10),
    "short_base_static_discount": (0, 4), "short_rate_mult_scale": (0, 10),
    "short_rate_add_scale": (0, 10), "scenario_spot_up": (1, 3), "scenario_spot_down": (0, 1),
    "add_factor": (0, 20), "mult_factor": (0, 20), "peg_loss_threshold": (0, 100),
    "peg_loss_factor": (0, 10), "conf_threshold": (0, 1), "conf_margin": (0, 20),
    "mm_perp_percent": (0, 3), "im_perp_percent": (0, 3), "mm_option_percent": (0, 2),
    "im_option_percent": (0, 2), "linear_base_cap": (0, 10), "abs_base_cap": (0, 10),
    "linear_c_base": (-10, 10), "abs_c_base": (-10, 10), "min_k_star": (0, 10),
    "width_scale": (0, 10), "vol_param_static": (0, 10), "vol_param_scale": (-20, 20),
}


@dataclass(frozen=True)
class PMRMParams:
    """PMRM parameters (names follow ``PMRMLib_2``; see ``configs/presets/derive-pmrm.toml``)."""

    values: Mapping[str, float]
    scenarios: tuple[PMRMScenario, ...]

    def __getattr__(self, key: str) -> float:
        try:
            return float(self.__dict__["values"][key])
        except KeyError:
            raise AttributeError(key) from None

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any], underlying: str | None = None) -> PMRMParams:
        """Read the shared tables, then apply ``[overrides.<underlying>.<table>]`` entries."""
        overrides: Mapping[str, Any] = {}
        if underlying is not None and "overrides" in params:
            overrides = table(params, "overrides").get(underlying, {})
            if not isinstance(overrides, Mapping):
                raise InputError(f"params.overrides.{underlying}", "must be a table")
        values: dict[str, float] = {}
        for tab_name, keys in _TABLE_KEYS.items():
            tab = dict(table(params, tab_name))
            unknown = set(tab) - set(keys)
            if unknown:
                raise InputError(f"params.{tab_name}.{sorted(unknown)[0]}", "unknown parameter")
            ov = overrides.get(tab_name, {})
            if not isinstance(ov, Mapping):
                raise InputError(f"params.overrides.{underlying}.{tab_name}", "must be a table")
            for k in ov:
                if k not in keys:
                    raise InputError(f"params.overrides.{underlying}.{tab_name}.{k}",
                                     "unknown parameter")
            tab.update(ov)
            for k in keys:
                lo, hi = _BOUNDS[k]
                values[k] = number(tab, k, tab_name, lo, hi)
        raw = params.get("scenarios")
        if not isinstance(raw, list) or not raw:
            raise InputError("params.scenarios", "at least one [[scenarios]] entry is required")
        if len(raw) > 40:
            raise InputError("params.scenarios", "at most 40 scenarios (PMRM_2 limit)")
        scen: list[PMRMScenario] = []
        seen: set[str] = set()
        for i, s in enumerate(raw):
            path = f"scenarios[{i}]"
            if not isinstance(s, Mapping):
                raise InputError(f"params.{path}", "must be a table")
            vs = s.get("vol_shock")
            if vs not in VOL_SHOCKS:
                raise InputError(f"params.{path}.vol_shock", f"must be one of {VOL_SHOCKS}")
            spot = number(s, "spot_shock", path, 0.0, 100.0)
            damp = number(s, "dampening", path, 0.0, 1e6)
            if vs in SKEW_SHOCKS:
                if spot != 1.0:
                    raise InputError(f"params.{path}.spot_shock", "skew scenarios use spot 1")
                if vs in seen:
                    raise InputError(f"params.{path}.vol_shock", f"only one {vs} scenario")
                seen.add(str(vs))
            scen.append(PMRMScenario(spot, str(vs), damp))
        return cls(values, tuple(scen))


# -- engine ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExpiryResult:
    """Per-expiry precomputations (``PMRMLib_2.addPrecomputes``)."""

    label: str
    sec_to_expiry: float
    tau: float
    rate: float
    discount: float
    forward_variable: float
    forward_fixed: float
    option_values: NDArray[np.float64]  # amount * B76, shape (n_options,)
    mtm: float
    basis_up_mtm: float
    basis_down_mtm: float
    basis_contingency: float
    vol_up_mult: float
    vol_down_mult: float
    static_discount_pos: float
    static_discount_neg: float
    min_confidence: float
    net_options: float
    naked_shorts: float


@dataclass(frozen=True)
class PMRMOutcome:
    """Everything :func:`evaluate_pmrm` computes.

    ``column_pnl`` has shape (n_scenarios, n_columns): columns are the perp (if held), every
    option of every expiry in input order, then every collateral; rows the scenarios. Its row
    sums are the scenario P&Ls of ``PMRMLib_2.getScenarioPnL``.
    """

    scenarios: tuple[PMRMScenario, ...]
    scenario_pnl: NDArray[np.float64]  # (n_scenarios,)
    column_pnl: NDArray[np.float64]  # (n_scenarios, n_columns)
    basis_column: NDArray[np.float64]  # (n_columns,) basis contingency attributed
    basis_contingency: float
    worst: float
    worst_index: int  # == len(scenarios) when the basis contingency binds
    expiries: tuple[ExpiryResult, ...]
    option_mtm: float
    collateral_values: NDArray[np.float64]
    collateral_mtm: float
    perp_value: float
    total_mtm: float
    cash: float
    mm_contingency: float
    im_contingency: float
    contingencies: Mapping[str, float]
    factor_mm: float
    factor_im: float
    mm_signed: float
    im_signed: float
    min_confidence: float

    @property
    def mm_requirement(self) -> float:
        """``MtM + cash - MM_signed`` = ``-worst*mmFactor + MMcont`` (>= 0)."""
        return -self.worst * self.factor_mm + self.mm_contingency

    @property
    def im_requirement(self) -> float:
        """``MtM + cash - IM_signed`` = ``-worst*imFactor + MMcont + IMcont`` (>= 0)."""
        return -self.worst * self.factor_im + self.mm_contingency + self.im_contingency


def confidence_contingency(conf: float, notional: float, p: PMRMParams) -> float:
    """``(1 - c) * confMargin * N`` when ``c < confThreshold``, else 0."""
    if conf < p.conf_threshold:
        return (1.0 - conf) * p.conf_margin * notional
    return 0.0


def vol_shock_multipliers(sec_to_expiry: float, p: PMRMParams) -> tuple[float, float]:
    """``(volUp, volDown)`` of an expiry: ``x = 30d / max(T, dteFloor)`` to the short/long power.

    Raises
    ------
    InputError
        If both ``T`` and the floor are zero (the multiplier is undefined).
    """
    denom = max(sec_to_expiry, p.dte_floor_days * SECONDS_PER_DAY)
    if denom <= 0.0:
        raise InputError("params.vol_shock.dte_floor_days",
                         "must be > 0 to shock vols of an option at expiry")
    x = THIRTY_DAYS_SECONDS / denom
    m = x ** (p.short_term_power if sec_to_expiry <= THIRTY_DAYS_SECONDS else p.long_term_power)
    return 1.0 + p.vol_range_up * m, max(0.0, 1.0 - p.vol_range_down * m)


def static_discounts(tau: float, rate: float, discount: float, p: PMRMParams
                     ) -> tuple[float, float]:
    """``(sdPos, sdNeg)`` applied to positive / negative shocked expiry values."""
    pos = p.long_base_static_discount * math.exp(
        -tau * (rate * p.long_rate_mult_scale + p.long_rate_add_scale))
    neg = p.short_base_static_discount / math.exp(
        -tau * (rate * p.short_rate_mult_scale + p.short_rate_add_scale))
    return pos, min(1.0 / discount, neg)


def skew_vol_multipliers(strikes: NDArray[np.float64], forward: float, tau: float, kind: str,
                         p: PMRMParams) -> NDArray[np.float64]:
    """Vol multipliers ``max(0, 1 + clamp(k * cap / k*))`` of a skew scenario, shape (n,)."""
    st = math.sqrt(tau)
    if kind == "linear":
        cap = p.linear_c_base * st + p.linear_base_cap
    else:
        cap = p.abs_c_base * st + p.abs_base_cap
    k_star = max(p.min_k_star, st * p.width_scale * (p.vol_param_static + st * p.vol_param_scale))
    if k_star <= 0.0:
        raise InputError("params.skew.min_k_star", "k* is zero: min_k_star must be > 0")
    with np.errstate(divide="ignore"):
        k = np.log(strikes / forward)
    if kind == "abs":
        k = np.abs(k)
    raw = k * cap / k_star
    bump = np.where(k >= 0, np.minimum(cap, raw), np.maximum(-cap, raw))
    return np.maximum(1.0 + bump, 0.0)


def _expiry_values(e: PMRMExpiry, fwd: NDArray[np.float64], vols: NDArray[np.float64],
                   tau: float, discount: float) -> NDArray[np.float64]:
    """``amount * B76`` per (scenario, option); ``fwd`` (n_scen, 1), ``vols`` (n_scen, n_opt)."""
    strikes = np.array([o.strike for o in e.options])
    calls = np.array([o.is_call for o in e.options])
    amounts = np.array([o.amount for o in e.options])
    prices = b76(fwd, strikes[None, :], tau, vols, calls[None, :], discount)
    out: NDArray[np.float64] = np.asarray(prices, dtype=np.float64) * amounts[None, :]
    return out


def _naked_shorts(options: Sequence[PMRMOption]) -> float:
    by_strike: dict[float, float] = {}
    for o in options:
        by_strike[o.strike] = by_strike.get(o.strike, 0.0) + o.amount
    return float(sum(max(0.0, -a) for a in by_strike.values()))


def evaluate_pmrm(pf: PMRMPortfolio, p: PMRMParams,
                  scenarios: Sequence[PMRMScenario] | None = None) -> PMRMOutcome:
    """Derive PMRM_2 margin of one subaccount, with every intermediate.

    Parameters
    ----------
    pf : PMRMPortfolio
    p : PMRMParams
    scenarios : sequence of PMRMScenario, optional
        Defaults to ``p.scenarios`` (the trusted-assessor path passes the 3 basis scenarios).
    """
    scen = tuple(p.scenarios if scenarios is None else scenarios)
    n_s = len(scen)
    spots = np.array([s.spot_shock for s in scen])
    damp = np.array([s.dampening for s in scen])
    kinds = [s.vol_shock for s in scen]

    has_perp = pf.perp_position != 0.0
    min_conf = min(pf.spot_confidence, pf.perp_confidence) if has_perp else pf.spot_confidence
    n_opt = sum(len(e.options) for e in pf.expiries)
    n_col = int(has_perp) + n_opt + len(pf.collaterals)
    col = np.zeros((n_s, n_col))
    basis_col = np.zeros(n_col)
    c0 = 0
    contingencies = dict.fromkeys(
        ("perp_mm", "perp_im", "perp_confidence", "option_mm", "option_im",
         "option_confidence", "collateral_mm", "collateral_im", "collateral_confidence"), 0.0)

    # perp
    if has_perp:
        col[:, 0] = pf.perp_position * (spots - 1.0) * pf.perp_price * damp
        c0 = 1
    perp_notional = abs(pf.perp_position) * pf.spot
    contingencies["perp_mm"] = perp_notional * p.mm_perp_percent
    contingencies["perp_im"] = perp_notional * p.im_perp_percent
    contingencies["perp_confidence"] = confidence_contingency(min_conf, perp_notional, p)

    # options, per expiry
    expiries: list[ExpiryResult] = []
    basis_total = 0.0
    option_mtm = 0.0
    non_skew = np.array([k not in SKEW_SHOCKS for k in kinds])
    for e in pf.expiries:
        n = len(e.options)
        if n == 0:
            continue
        sec = max(float(e.sec_to_expiry), 0.0)
        tau = sec / SECONDS_PER_YEAR
        rate = max(float(e.rate), 0.0)
        disc = math.exp(-rate * tau)
        f_fix = float(e.forward_fixed)
        f_var = float(e.forward) - f_fix
        vols = np.array([o.vol for o in e.options])
        strikes = np.array([o.strike for o in e.options])
        base_f = np.array([[f_var + f_fix], [f_var * p.scenario_spot_up + f_fix],
                           [f_var * p.scenario_spot_down + f_fix]])
        base = _expiry_values(e, base_f, np.broadcast_to(vols, (3, n)), tau, disc)
        opt_vals = base[0]
        mtm = float(opt_vals.sum())
        up_mtm, down_mtm = float(base[1].sum()), float(base[2].sum())
        b_raw = min(up_mtm - mtm, down_mtm - mtm, 0.0)
        b_factor = p.add_factor + p.mult_factor * tau
        basis = b_raw * b_factor
        basis_total += basis
        if b_raw < 0.0:
            row = base[1] if up_mtm - mtm <= down_mtm - mtm else base[2]
            basis_col[c0:c0 + n] = (row - opt_vals) * b_factor
        v_up, v_down = vol_shock_multipliers(sec, p)
        sd_pos, sd_neg = static_discounts(tau, rate, disc, p)

        values = np.zeros((n_s, n))
        if non_skew.any():
            idx = np.flatnonzero(non_skew)
            fwd = (f_var * spots[idx] + f_fix)[:, None]
            vol_m = np.empty((idx.size, n))
            for r, jj in enumerate(idx):
                if kinds[int(jj)] == "up":
                    vol_m[r] = np.maximum(p.min_vol_up_shock, vols * v_up)
                elif kinds[int(jj)] == "down":
                    vol_m[r] = vols * v_down
                else:
                    vol_m[r] = vols
            values[idx] = _expiry_values(e, fwd, vol_m, tau, disc)
        for j, k in enumerate(kinds):
            if k in SKEW_SHOCKS:
                mult = skew_vol_multipliers(strikes, f_var + f_fix, tau, k, p)
                values[j] = _expiry_values(e, np.array([[f_var + f_fix]]),
                                           (vols * mult)[None, :], tau, disc)[0]
        totals = values.sum(axis=1)
        sd = np.where(totals >= 0.0, sd_pos, sd_neg)
        per_opt = (values * sd[:, None] - opt_vals[None, :]) * damp[:, None]
        exp_pnl = per_opt.sum(axis=1)
        for j, k in enumerate(kinds):
            if k in SKEW_SHOCKS and exp_pnl[j] > 0.0:
                per_opt[j] = -per_opt[j]
        col[:, c0:c0 + n] = per_opt
        c0 += n

        e_conf = min(min_conf, e.forward_confidence, e.rate_confidence,
                     *(o.vol_confidence for o in e.options))
        net_opts = float(sum(abs(o.amount) for o in e.options))
        naked = _naked_shorts(e.options)
        contingencies["option_mm"] += naked * pf.spot * p.mm_option_percent
        contingencies["option_im"] += naked * pf.spot * p.im_option_percent
        contingencies["option_confidence"] += confidence_contingency(
            e_conf, net_opts * pf.spot, p)
        option_mtm += mtm
        expiries.append(ExpiryResult(
            label=e.label, sec_to_expiry=sec, tau=tau, rate=rate, discount=disc,
            forward_variable=f_var, forward_fixed=f_fix, option_values=opt_vals, mtm=mtm,
            basis_up_mtm=up_mtm, basis_down_mtm=down_mtm, basis_contingency=basis,
            vol_up_mult=v_up, vol_down_mult=v_down, static_discount_pos=sd_pos,
            static_discount_neg=sd_neg, min_confidence=e_conf, net_options=net_opts,
            naked_shorts=naked))

    # collateral
    coll_vals = np.array([c.amount * c.price / pf.stable_price for c in pf.collaterals])
    for i, c in enumerate(pf.collaterals):
        v = float(coll_vals[i])
        if c.risk_cancelling:
            col[:, c0 + i] = v * (spots - 1.0) * damp
        contingencies["collateral_mm"] += v * c.mm_haircut
        contingencies["collateral_im"] += v * c.im_haircut
        contingencies["collateral_confidence"] += confidence_contingency(
            min(c.confidence, pf.spot_confidence), v, p)
    collateral_mtm = float(coll_vals.sum()) if coll_vals.size else 0.0

    scen_pnl = col.sum(axis=1)
    worst, worst_i = basis_total, n_s
    for j in range(n_s):  # strict <, in order: ties keep the basis contingency, then earlier
        if scen_pnl[j] < worst:
            worst, worst_i = float(scen_pnl[j]), j
    factor_mm = p.mm_factor
    factor_im = p.im_factor
    if pf.stable_price < p.peg_loss_threshold:
        factor_im += (p.peg_loss_threshold - pf.stable_price) * p.peg_loss_factor
    mm_cont = (contingencies["perp_mm"] + contingencies["option_mm"]
               + contingencies["collateral_mm"])
    im_cont = (contingencies["perp_im"] + contingencies["perp_confidence"]
               + contingencies["option_im"] + contingencies["option_confidence"]
               + contingencies["collateral_im"] + contingencies["collateral_confidence"])
    total_mtm = pf.perp_value + option_mtm + collateral_mtm
    mm = worst * factor_mm - mm_cont + total_mtm + pf.cash
    im = worst * factor_im - mm_cont - im_cont + total_mtm + pf.cash
    return PMRMOutcome(
        scenarios=scen, scenario_pnl=scen_pnl, column_pnl=col, basis_column=basis_col,
        basis_contingency=basis_total, worst=worst, worst_index=worst_i,
        expiries=tuple(expiries), option_mtm=option_mtm, collateral_values=coll_vals,
        collateral_mtm=collateral_mtm, perp_value=pf.perp_value, total_mtm=total_mtm,
        cash=pf.cash, mm_contingency=mm_cont, im_contingency=im_cont,
        contingencies=contingencies, factor_mm=factor_mm, factor_im=factor_im,
        mm_signed=mm, im_signed=im, min_confidence=min_conf)


def settlement_fixed_portion(forward: float, sec_to_expiry: float, window_seconds: float
                             ) -> float:
    """Default fixed part of the forward: ``F (W - T) / W`` within ``W`` s of expiry, else 0.

    Derive settles on an average over the last ``W`` (1800) seconds; the part already averaged
    no longer moves with spot (the upstream test harness feeds exactly this split).
    """
    if window_seconds <= 0.0 or sec_to_expiry >= window_seconds:
        return 0.0
    return forward * (window_seconds - max(sec_to_expiry, 0.0)) / window_seconds


def basis_scenarios(p: PMRMParams) -> tuple[PMRMScenario, ...]:
    """The trusted risk assessor's three scenarios: basis up, basis down, unchanged."""
    return (PMRMScenario(p.scenario_spot_up, "none"), PMRMScenario(p.scenario_spot_down, "none"),
            PMRMScenario(1.0, "none"))


# -- adapter -----------------------------------------------------------------------------------
@dataclass
class _Book:
    underlying: str
    perp: NetPosition | None
    options: list[NetPosition] = field(default_factory=list)


class DerivePMRMModel(BaseMarginModel):
    """Derive PMRM_2 portfolio margin (see module docstring and docs/models/derive-pmrm.md)."""

    name = "derive-pmrm"
    default_config = "presets/derive-pmrm.toml"

    def _validate(self, params: Mapping[str, Any]) -> None:
        check_meta(params)
        unds = params.get("general", {}).get("underlyings")
        if not isinstance(unds, list) or not unds or not all(isinstance(u, str) for u in unds):
            raise InputError("params.general.underlyings", "must be a non-empty list of names")
        number(params["general"], "settlement_window_seconds", "general", 0.0, 86400.0)
        for u in unds:
            PMRMParams.from_mapping(params, u)
        for asset, cp in params.get("collateral", {}).items():
            path = f"collateral.{asset}"
            if not isinstance(cp, Mapping):
                raise InputError(f"params.{path}", "must be a table")
            flag(cp, "risk_cancelling", path)
            number(cp, "mm_haircut", path, 0.0, 1.0)
            number(cp, "im_haircut", path, 0.0, 1.0)

    def _book(self, portfolio: Portfolio, market: MarketSnapshot) -> _Book:
        unds = list(self.params["general"]["underlyings"])
        book: _Book | None = None
        for pos in net_positions(portfolio):
            inst = pos.instrument
            if inst.settlement is not Settlement.LINEAR or inst.quote != "USDC":
                raise unsupported(pos, PRESET, "Derive lists USDC-settled options and "
                                  f"perpetuals only (e.g. {inst.underlying}_USDC-...)")
            if inst.kind not in (InstrumentKind.OPTION, InstrumentKind.PERPETUAL):
                why = ("hold spot as collateral (portfolio collateral)"
                       if inst.kind is InstrumentKind.SPOT else "Derive has no dated futures")
                raise unsupported(pos, PRESET, why)
            if inst.underlying not in unds:
                raise unsupported(pos, PRESET, f"no PMRM parameters for {inst.underlying} "
                                  f"(configured: {', '.join(unds)})")
            if book is None:
                book = _Book(inst.underlying, None)
            elif inst.underlying != book.underlying:
                raise unsupported(pos, PRESET, "one PMRM subaccount margins one underlying; "
                                  f"this book is on {book.underlying}: split it by underlying")
            if inst.kind is InstrumentKind.PERPETUAL:
                book.perp = pos
            else:
                book.options.append(pos)
        if book is None:
            priced = [u for u in unds if u in market.index_prices]
            if priced and not any(a != "USDC" for a in portfolio.collateral):
                return _Book(priced[0], None)  # nothing at risk: any instance gives the same
            if len(priced) != 1:
                raise InputError("positions", "a book without positions needs exactly one "
                                 f"configured underlying ({', '.join(unds)}) in index_prices "
                                 "to pick its PMRM instance")
            book = _Book(priced[0], None)
        return book

    def inputs(self, portfolio: Portfolio, market: MarketSnapshot
               ) -> tuple[PMRMPortfolio, PMRMParams, _Book, list[str]]:
        """Engine inputs for ``portfolio`` at ``market``, with the column names."""
        book = self._book(portfolio, market)
        und = book.underlying
        p = PMRMParams.from_mapping(self.params, und)
        mi = MarketInputs(market)
        pi = PortfolioInputs(portfolio.preset_inputs)
        window = float(self.params["general"]["settlement_window_seconds"])
        spot = market.index(und)
        columns: list[str] = []
        perp_q = perp_price = perp_value = 0.0
        perp_conf = 1.0
        if book.perp is not None:
            perp_q = book.perp.quantity
            perp_price = require_mark(market, book.perp.name, PRESET)
            perp_conf = mi.perp_confidence(book.perp.name)
            perp_value = pi.perp_value(book.perp.name)
            columns.append(book.perp.name)
        held_perp = {book.perp.name} if book.perp is not None else set()
        for name in sorted(pi.perp_names() - held_perp):
            raise InputError(f"portfolio.preset_inputs.perp_unrealised_pnl.{name}",
                             "given for a perpetual that is not held")
        by_exp: dict[Any, list[NetPosition]] = {}
        for pos in book.options:
            by_exp.setdefault(pos.instrument.expiry, []).append(pos)
        expiries: list[PMRMExpiry] = []
        for exp in sorted(by_exp):
            sec = seconds_to_expiry(market, exp)
            key = expiry_key(exp)
            fwd = quoted_forward(market, und, exp)
            if fwd is None:
                raise InputError(f"forwards.{und}.{key}", f"missing: {PRESET} needs the forward "
                                 "of every option expiry (Derive's forward feed)")
            given = mi.forward_fixed(und, exp)
            f_fix = given if given is not None else settlement_fixed_portion(fwd, sec, window)
            if f_fix > fwd:
                raise InputError(f"market.preset_inputs.forward_fixed.{und}.{key}",
                                 f"fixed portion {f_fix} exceeds the forward {fwd}")
            opts: list[PMRMOption] = []
            for pos in by_exp[exp]:
                inst = pos.instrument
                assert inst.strike is not None
                vol = (require_vol(market, pos.name, PRESET) if sec > 0.0
                       else float(market.implied_vols.get(pos.name, 0.0)))
                opts.append(PMRMOption(inst.strike, bool(inst.is_call), vol, pos.quantity,
                                       mi.vol_confidence(pos.name), pos.name))
                columns.append(pos.name)
            expiries.append(PMRMExpiry(
                sec_to_expiry=sec, forward=fwd, options=tuple(opts), rate=mi.rate(und, exp),
                forward_fixed=f_fix, forward_confidence=mi.forward_confidence(und, exp),
                rate_confidence=mi.rate_confidence(und, exp), label=key))
        cash = 0.0
        colls: list[PMRMCollateral] = []
        ctab = self.params.get("collateral", {})
        for asset, amount in portfolio.collateral.items():
            a = float(amount)
            if asset == "USDC":
                cash = a
                continue
            if asset not in ctab:
                raise InputError(f"collateral.{asset}", f"{PRESET} has no collateral parameters "
                                 f"for {asset} (configured: {', '.join(ctab) or 'none'})")
            if a < 0.0:
                raise InputError(f"collateral.{asset}", "collateral balances must be >= 0 "
                                 "(only USDC cash can be negative)")
            cp = ctab[asset]
            colls.append(PMRMCollateral(
                asset, a, market.index(asset, f"index_prices.{asset}"), mi.index_confidence(asset),
                bool(cp["risk_cancelling"]), float(cp["mm_haircut"]), float(cp["im_haircut"])))
            columns.append(f"collateral:{asset}")
        pf = PMRMPortfolio(
            spot=spot, expiries=tuple(expiries), collaterals=tuple(colls), cash=cash,
            spot_confidence=mi.index_confidence(und), stable_price=mi.stable_price(),
            perp_position=perp_q, perp_price=perp_price, perp_confidence=perp_conf,
            perp_value=perp_value)
        return pf, p, book, columns

    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> MarginResult:
        pf, p, book, columns = self.inputs(portfolio, market)
        out = evaluate_pmrm(pf, p)
        trusted = evaluate_pmrm(pf, p, basis_scenarios(p))
        labels = tuple(s.label for s in out.scenarios) + ("basis contingency",)
        pnl = np.vstack([out.column_pnl, out.basis_column[None, :]])
        worst_label = labels[out.worst_index]
        positions = ([book.perp] if book.perp is not None else []) + book.options
        details = _details(out, p, pf, book.underlying, trusted.mm_signed)
        return MarginResult(
            model=self.name,
            params_hash=self.params_hash,
            market_timestamp=market.timestamp,
            currency="USD",
            initial_margin=out.im_requirement,
            maintenance_margin=out.mm_requirement,
            worst_scenarios=(WorstScenario(worst_label, out.worst_index, -out.worst,
                                           book.underlying),),
            scenario_labels=labels,
            scenario_pnl=pnl,
            position_names=tuple(columns),
            contributions=-pnl[out.worst_index],
            greeks=preset_greeks(positions, market),
            components={"scenario_loss": -out.worst * out.factor_im,
                        "mm_contingency": out.mm_contingency,
                        "im_contingency": out.im_contingency},
            details=details,
        )


def _details(out: PMRMOutcome, p: PMRMParams, pf: PMRMPortfolio, underlying: str,
             trusted_mm: float) -> dict[str, Any]:
    shocks = sorted({s.spot_shock for s in out.scenarios if s.vol_shock not in SKEW_SHOCKS
                     and s.dampening == 1.0}, reverse=True)
    grid: dict[tuple[float, str], float] = {
        (s.spot_shock, s.vol_shock): float(out.scenario_pnl[j])
        for j, s in enumerate(out.scenarios) if s.dampening == 1.0}
    vols = ("down", "none", "up")
    full = [s for s in shocks if all((s, v) in grid for v in vols)]
    return {
        "sign_convention": (
            "derive_im_signed / derive_mm_signed are Derive's margin balances "
            "(MtM + cash - requirement; healthy iff >= 0). initial_margin / maintenance_margin"
            " are the positive requirements: equity (MtM + cash) - signed balance."),
        "underlying": underlying,
        "derive_im_signed": out.im_signed,
        "derive_mm_signed": out.mm_signed,
        "derive_requirement_im_signed": -out.im_requirement,
        "derive_requirement_mm_signed": -out.mm_requirement,
        "mark_to_market": out.total_mtm,
        "cash": out.cash,
        "equity": out.total_mtm + out.cash,
        "option_mtm": out.option_mtm,
        "collateral_mtm": out.collateral_mtm,
        "perp_value": out.perp_value,
        "spot": pf.spot,
        "stable_price": pf.stable_price,
        "basis_contingency": out.basis_contingency,
        "worst_scenario": {"label": (out.scenarios[out.worst_index].label
                                     if out.worst_index < len(out.scenarios)
                                     else "basis contingency"),
                           "index": out.worst_index, "pnl": out.worst},
        "binding": ("basis contingency" if out.worst_index == len(out.scenarios)
                    else "scenario"),
        "factor_mm": out.factor_mm,
        "factor_im": out.factor_im,
        "mm_contingency": out.mm_contingency,
        "im_contingency": out.im_contingency,
        "contingencies": dict(out.contingencies),
        "min_confidence": out.min_confidence,
        "trusted_assessor_mm_signed": trusted_mm,
        "expiries": [{
            "expiry": e.label, "sec_to_expiry": e.sec_to_expiry, "tau": e.tau, "rate": e.rate,
            "discount": e.discount, "forward_variable": e.forward_variable,
            "forward_fixed": e.forward_fixed, "mtm": e.mtm, "basis_contingency":
            e.basis_contingency, "vol_shock_up": e.vol_up_mult, "vol_shock_down":
            e.vol_down_mult, "static_discount_pos": e.static_discount_pos,
            "static_discount_neg": e.static_discount_neg, "min_confidence": e.min_confidence,
            "net_options": e.net_options, "naked_shorts": e.naked_shorts}
            for e in out.expiries],
        "scenarios": [{"label": s.label, "spot_shock": s.spot_shock, "vol_shock": s.vol_shock,
                       "dampening": s.dampening, "pnl": float(out.scenario_pnl[j])}
                      for j, s in enumerate(out.scenarios)],
        "risk_matrix": risk_matrix(
            "Derive PMRM scenario P&L, USD (after static discounts; gains positive)",
            "spot shock", [f"x{s:g}" for s in full], [f"vol {v}" for v in vols],
            [[grid[(s, v)] for v in vols] for s in full]),
    }
