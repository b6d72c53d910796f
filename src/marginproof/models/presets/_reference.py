"""Plain-Python reference twins of the preset engines' vectorised scenario loops.

Scalar loops over scenarios, expiries and options with the scalar Black-76 oracle
(:mod:`marginproof.pricing._black76_reference`), written straight from ``exchange-presets.md``.
Tests assert the vectorised engines agree with them; they are not used at run time.
"""

from __future__ import annotations

import math

from marginproof.models.presets.deribit_pm import PMPosition
from marginproof.models.presets.derive_pmrm import (
    SKEW_SHOCKS,
    PMRMParams,
    PMRMPortfolio,
    PMRMScenario,
)
from marginproof.pricing._black76_reference import price as b76

SECONDS_PER_YEAR = 365.0 * 86400.0


def pmrm_scenario_pnl(pf: PMRMPortfolio, p: PMRMParams) -> tuple[list[float], float]:
    """(P&L of every scenario of ``p.scenarios``, summed basis contingency)."""
    out: list[float] = []
    basis = 0.0
    for e in pf.expiries:
        tau = e.sec_to_expiry / SECONDS_PER_YEAR
        r = max(e.rate, 0.0)
        d = math.exp(-r * tau)
        f_var = e.forward - e.forward_fixed

        def value(fwd: float, vols: list[float], tau: float = tau, d: float = d,
                  options: tuple = e.options) -> float:  # type: ignore[type-arg]
            return float(sum(o.amount * b76(fwd, o.strike, tau, v, o.is_call, d)
                             for o, v in zip(options, vols, strict=True)))

        base_vols = [o.vol for o in e.options]
        mtm = value(e.forward, base_vols)
        up = value(f_var * p.scenario_spot_up + e.forward_fixed, base_vols)
        down = value(f_var * p.scenario_spot_down + e.forward_fixed, base_vols)
        basis += min(up - mtm, down - mtm, 0.0) * (p.add_factor + p.mult_factor * tau)
    for s in p.scenarios:
        out.append(_scenario(pf, p, s))
    return out, basis


def _scenario(pf: PMRMPortfolio, p: PMRMParams, s: PMRMScenario) -> float:
    total = 0.0
    if pf.perp_position != 0.0:
        total += pf.perp_position * (s.spot_shock - 1.0) * pf.perp_price * s.dampening
    for e in pf.expiries:
        sec = e.sec_to_expiry
        tau = sec / SECONDS_PER_YEAR
        r = max(e.rate, 0.0)
        d = math.exp(-r * tau)
        f_var = e.forward - e.forward_fixed
        x = 30 * 86400.0 / max(sec, p.dte_floor_days * 86400.0)
        m = x ** (p.short_term_power if sec <= 30 * 86400.0 else p.long_term_power)
        v_up, v_down = 1.0 + p.vol_range_up * m, max(0.0, 1.0 - p.vol_range_down * m)
        mtm = sum(o.amount * b76(e.forward, o.strike, tau, o.vol, o.is_call, d)
                  for o in e.options)
        w = 0.0
        for o in e.options:
            if s.vol_shock in SKEW_SHOCKS:
                f = e.forward
                st = math.sqrt(tau)
                if s.vol_shock == "linear":
                    cap = p.linear_c_base * st + p.linear_base_cap
                else:
                    cap = p.abs_c_base * st + p.abs_base_cap
                ks = max(p.min_k_star,
                         st * p.width_scale * (p.vol_param_static + st * p.vol_param_scale))
                k = math.log(o.strike / f)
                if s.vol_shock == "abs":
                    k = abs(k)
                bump = min(cap, k * cap / ks) if k >= 0 else max(-cap, k * cap / ks)
                vol = o.vol * max(0.0, 1.0 + bump)
            else:
                f = f_var * s.spot_shock + e.forward_fixed
                if s.vol_shock == "up":
                    vol = max(p.min_vol_up_shock, o.vol * v_up)
                elif s.vol_shock == "down":
                    vol = o.vol * v_down
                else:
                    vol = o.vol
            w += o.amount * b76(f, o.strike, tau, vol, o.is_call, d)
        sd_pos = p.long_base_static_discount * math.exp(
            -tau * (r * p.long_rate_mult_scale + p.long_rate_add_scale))
        sd_neg = min(1.0 / d, p.short_base_static_discount / math.exp(
            -tau * (r * p.short_rate_mult_scale + p.short_rate_add_scale)))
        pnl = (w * (sd_pos if w >= 0 else sd_neg) - mtm) * s.dampening
        total += -abs(pnl) if s.vol_shock in SKEW_SHOCKS else pnl
    for c in pf.collaterals:
        if c.risk_cancelling:
            total += c.amount * c.price / pf.stable_price * (s.spot_shock - 1.0) * s.dampening
    return total


def deribit_position_pnl(pos: PMPosition, move: float, vol_name: str, pair: dict[str, float],
                         dte_floor_days: float) -> float:
    """P&L of one Deribit risk-matrix position for one (move, vol) scenario."""
    if pos.kind != "option":
        if pos.inverse:
            return pos.quantity * move / (1.0 + move)
        return pos.quantity * move * pos.price
    dte = max(pos.tau * 365.0, dte_floor_days)
    f = (30.0 / dte) ** (pair["short_term_vega_power"] if dte <= 30.0
                         else pair["long_term_vega_power"])
    if vol_name == "up":
        vol = max(pos.vol * (1.0 + pair["volatility_range_up"] * f),
                  pair["min_volatility_for_shock_up"])
    elif vol_name == "down":
        vol = max(pos.vol * (1.0 - pair["volatility_range_down"] * f), 0.0)
    else:
        vol = pos.vol
    f_new = pos.price * (1.0 + move)
    new = b76(f_new, pos.strike, pos.tau, vol, pos.is_call, 1.0)
    old = b76(pos.price, pos.strike, pos.tau, pos.vol, pos.is_call, 1.0)
    if pos.inverse:
        return pos.quantity * (new / f_new - old / pos.price)
    return pos.quantity * (new - old)
