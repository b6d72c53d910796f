"""``deribit-pm``: Deribit segregated portfolio margin (the risk matrix, "PME").

Follows ``exchange-presets.md`` section 3. Each settlement currency is margined on its own and
the requirements are in that currency (BTC, ETH for inverse products; USDC for linear ones):

* standard table: moves ``m_j = price_range * (j - n) / n`` (``j = 0..2n``), each with the vol
  scenarios (down, none, up) -> ``3 (2n + 1)`` P&Ls per instrument. Inverse futures and
  perpetuals (``q`` coins) make ``q m / (1 + m)`` coins; linear ones ``q m mark`` USDC; options
  are revalued with Black-76 on ``F (1 + m)`` (undiscounted), inverse ones in coin as
  ``B76 / F'``, with vol ``vol (1 + up f)`` floored at ``min_volatility_for_shock_up`` or
  ``max(vol (1 - down f), 0)``, ``f = (30 / DTE)^power`` (DTE floored at 1 day);
* aggregation per settlement currency: sum over its instruments, positive sums times
  ``pnl_offset``; ``worst_case = max(0, -min)``. Every underlying of one currency (the USDC
  bucket) moves by its own range in the same scenario;
* extended table (**our reading, the venue's dampener is unpublished**): moves
  ``extended_moves`` with vol up, futures at their edge move; the loss beyond the worst
  standard-edge value of the same side, times ``extended_table_factor``, adds to the worst case.
  Set ``extended_moves = []`` to switch it off;
* roll shock ``|q| max(min_annualised_move, annualised_move_risk tau)`` per futures/perpetual
  position (``tau = 0`` for perpetuals; linear contracts in USDC at the index);
* ``risk_matrix_margin = worst_case + extended + roll_shock (+ delta shock, correlation = 0)``;
  ``MM = mm_factor * risk_matrix_margin``; ``IM = risk_matrix_margin + mmp + open orders +
  spot margin`` (account inputs, default 0).

The delta (liquidity) shock is zero below ``delta_total_liq_shock_threshold``; above it the
formula is unpublished, so the preset refuses the book instead of understating it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.instruments.contracts import InstrumentKind
from marginproof.instruments.names import format_expiry
from marginproof.instruments.portfolio import Portfolio
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import BaseMarginModel
from marginproof.models.presets.common import (
    SECONDS_PER_YEAR,
    NetPosition,
    b76,
    b76_delta,
    check_meta,
    expiry_key,
    flag,
    net_positions,
    number,
    preset_greeks,
    quoted_forward,
    require_vol,
    risk_matrix,
    seconds_to_expiry,
    table,
    unsupported,
)
from marginproof.models.presets.inputs import PortfolioInputs
from marginproof.models.result import MarginResult, WorstScenario

PRESET = "deribit-pm"
#: Reading of the extended table's "only a fraction of simulated P&L": ``range`` (default)
#: scales an option's P&L at move ``m`` by ``price_range / |m|``; ``full`` counts all of it.
EXTENDED_FRACTIONS = ("range", "full")
#: Share of the IM from unpublished rules above which the result carries a warning.
UNVERIFIED_WARN = 0.25
EXTENDED_ASSUMPTION = {
    "range": ("deribit-pm assumption: extended table = option P&L at each extended move x "
              "price_range/|move|, counted beyond the standard edge (Deribit publishes neither "
              "the fraction nor its dampener; this reading reproduces both published "
              "examples)"),
    "full": ("deribit-pm assumption: extended table = the full option P&L at each extended "
             "move beyond the standard edge (an upper bound, far above Deribit's dampened "
             "figure for short far out-of-the-money options)"),
}
VOL_NAMES = ("down", "none", "up")
_PAIR_KEYS = ("price_range", "volatility_range_up", "volatility_range_down",
              "short_term_vega_power", "long_term_vega_power", "min_volatility_for_shock_up",
              "extended_table_factor", "max_delta_shock", "delta_total_liq_shock_threshold")
_CCY_KEYS = ("pnl_offset", "max_offsetable_pnl", "annualised_move_risk", "min_annualised_move",
             "extended_dampener")


@dataclass(frozen=True)
class PMPosition:
    """One net position as the risk matrix sees it.

    ``quantity`` is signed coins (inverse futures: USD face / mark). ``price`` is the futures
    or perpetual mark, or the option's forward (USD). ``tau`` in years (0 for perpetuals).
    """

    name: str
    underlying: str
    currency: str
    kind: str  # "future", "perpetual", "option"
    inverse: bool
    quantity: float
    price: float
    index: float
    tau: float
    strike: float = math.nan
    is_call: bool = False
    vol: float = math.nan


@dataclass(frozen=True)
class PMCurrencyResult:
    """Risk matrix and requirements of one settlement currency.

    Scenario ``j`` moves every underlying of the currency by its own
    ``price_range * (j - n) / n`` at once; vectors have shape (3 (2n+1),), per-position P&L
    ``pnl`` (n_std, n_pos), extended ``ext_pnl`` (n_ext, n_pos).
    """

    currency: str
    underlyings: tuple[str, ...]
    price_ranges: Mapping[str, float]
    pnl: NDArray[np.float64]
    pre_aggregated: NDArray[np.float64]
    aggregated: NDArray[np.float64]
    ext_pnl: NDArray[np.float64]
    extended_aggregated: NDArray[np.float64]  # loss beyond the same-side edge (<= 0)
    worst_index: int
    worst_case: float
    extended_loss: float
    roll_shock: float
    roll_shock_by_position: Mapping[str, float]
    delta_total_usd: Mapping[str, float]
    delta_shock: float
    correlation_contingency: float
    risk_matrix_margin: float
    mmp_margin: float
    open_orders_margin: float
    spot_margin: float
    initial_margin: float
    maintenance_margin: float


def vol_shock_factor(tau: float, pair: Mapping[str, float], dte_floor_days: float) -> float:
    """``(30 / DTE)^power``, DTE in days floored at ``dte_floor_days``."""
    dte = max(tau * 365.0, dte_floor_days)
    power = pair["short_term_vega_power"] if dte <= 30.0 else pair["long_term_vega_power"]
    return float((30.0 / dte) ** power)


def shocked_vols(vol: float, tau: float, pair: Mapping[str, float], dte_floor_days: float
                 ) -> dict[str, float]:
    """Vol under each vol scenario."""
    f = vol_shock_factor(tau, pair, dte_floor_days)
    return {"down": max(vol * (1.0 - pair["volatility_range_down"] * f), 0.0), "none": vol,
            "up": max(vol * (1.0 + pair["volatility_range_up"] * f),
                      pair["min_volatility_for_shock_up"])}


def position_pnl(pos: PMPosition, moves: NDArray[np.float64], vol_names: Sequence[str],
                 pair: Mapping[str, float], dte_floor_days: float) -> NDArray[np.float64]:
    """P&L of one position for every (move, vol) pair, moves outer, shape (n_moves * n_vols,).

    Coins for inverse instruments, USDC for linear ones.
    """
    n_v = len(vol_names)
    m = np.repeat(moves, n_v)
    if pos.kind != "option":
        if pos.inverse:
            return pos.quantity * m / (1.0 + m)
        return pos.quantity * m * pos.price
    vols = shocked_vols(pos.vol, pos.tau, pair, dte_floor_days)
    v = np.tile(np.array([vols[n] for n in vol_names]), moves.size)
    f_new = pos.price * (1.0 + m)
    value = np.asarray(b76(f_new, pos.strike, pos.tau, v, pos.is_call, 1.0))
    base = float(b76(pos.price, pos.strike, pos.tau, pos.vol, pos.is_call, 1.0))
    if pos.inverse:
        out: NDArray[np.float64] = pos.quantity * (value / f_new - base / pos.price)
        return out
    return np.asarray(pos.quantity * (value - base), dtype=np.float64)


def extended_pnl(pos: PMPosition, ext_moves: NDArray[np.float64], pair: Mapping[str, float],
                 dte_floor_days: float, mode: str = "range") -> NDArray[np.float64]:
    """P&L of one position at each extended move (vol up), shape (n_ext,): the one definition
    the preset and the hedge's surrogate share.

    Futures and perpetuals move at most ``price_range``; an option's P&L at move ``m`` is
    scaled by ``price_range / |m|`` under ``mode = "range"`` (our reading of the extended
    table's "fraction of simulated P&L") and counted in full under ``"full"``.
    """
    if ext_moves.size == 0:
        return np.zeros(0)
    pr = float(pair["price_range"])
    moves = ext_moves if pos.kind == "option" else np.clip(ext_moves, -pr, pr)
    out = position_pnl(pos, moves, ("up",), pair, dte_floor_days)
    if pos.kind == "option" and mode == "range":
        out = out * np.minimum(1.0, pr / np.maximum(np.abs(ext_moves), 1e-12))
    return np.asarray(out, dtype=np.float64)


def _offset(vec: NDArray[np.float64], pnl_offset: float) -> NDArray[np.float64]:
    return np.where(vec > 0.0, vec * pnl_offset, vec)


def _worst_index(vec: NDArray[np.float64], vol_names: Sequence[str]) -> int:
    """Index of the minimum; among ties prefer the unchanged-vol scenario (as Deribit reports)."""
    lo = float(vec.min())
    tol = 1e-12 * max(1.0, abs(lo))
    cand = np.flatnonzero(vec <= lo + tol)
    n_v = len(vol_names)
    for c in cand:
        if vol_names[int(c) % n_v] == "none":
            return int(c)
    return int(cand[0])


def delta_usd(pos: PMPosition) -> float:
    """Delta of a position in USD at the index (forward delta, undiscounted)."""
    if pos.kind != "option":
        return pos.quantity * pos.index
    d = float(b76_delta(pos.price, pos.strike, pos.tau, pos.vol, pos.is_call))
    if pos.inverse:  # coin value V/F: USD delta scales by S/F (see result.position_greeks_usd)
        d *= pos.index / pos.price
    return pos.quantity * d * pos.index


def evaluate_currency(positions: Sequence[PMPosition], currency: str, params: Mapping[str, Any],
                      mmp: float = 0.0, open_orders: float = 0.0, spot: float = 0.0
                      ) -> PMCurrencyResult:
    """Risk matrix and requirements of one settlement currency (all ``positions`` settle in it).

    All instruments of the currency are summed per scenario, positive sums are multiplied by
    ``pnl_offset`` and ``worst_case = max(0, -min)`` (exchange-presets 3.2).
    """
    general = params["general"]
    ccy = {k: float(params["currency"][currency][k]) for k in _CCY_KEYS}
    n = int(general["buckets_count"])
    vol_names = tuple(general["vol_scenarios"])
    n_v = len(vol_names)
    floor = float(general["dte_floor_days"])
    unit = (np.arange(2 * n + 1) - n) / n
    ext_moves = np.array([float(e) for e in general["extended_moves"]])
    ext_mode = str(general.get("extended_fraction", "range"))
    unds = tuple(dict.fromkeys(p.underlying for p in positions))
    pairs = {u: {k: float(params["pair"][u][k]) for k in _PAIR_KEYS} for u in unds}
    n_std = unit.size * n_v
    pnl = np.zeros((n_std, len(positions)))
    ext_pnl = np.zeros((ext_moves.size, len(positions)))
    for i, p in enumerate(positions):
        pair = pairs[p.underlying]
        pr = pair["price_range"]
        pnl[:, i] = position_pnl(p, pr * unit, vol_names, pair, floor)
        ext_pnl[:, i] = extended_pnl(p, ext_moves, pair, floor, ext_mode)
    pre = pnl.sum(axis=1)
    agg = _offset(pre, ccy["pnl_offset"])
    w_i = _worst_index(agg, vol_names)
    worst = max(0.0, -float(agg[w_i]))
    ext_agg = _offset(ext_pnl.sum(axis=1), ccy["pnl_offset"])
    edge = np.where(ext_moves < 0.0, float(agg[:n_v].min()), float(agg[-n_v:].min()))
    beyond = np.minimum(ext_agg - edge, 0.0)
    factor = max((pairs[u]["extended_table_factor"] for u in unds), default=1.0)
    ext_loss = factor * max(0.0, -float(beyond.min())) if beyond.size else 0.0

    roll: dict[str, float] = {}
    for p in positions:
        if p.kind == "option":
            continue
        rate = max(ccy["min_annualised_move"], ccy["annualised_move_risk"] * p.tau)
        amt = abs(p.quantity) * rate
        roll[p.name] = amt if p.inverse else amt * p.index
    d_usd = {u: float(sum(delta_usd(p) for p in positions if p.underlying == u)) for u in unds}
    for u, d in d_usd.items():
        thr = pairs[u]["delta_total_liq_shock_threshold"]
        if abs(d) > thr:
            raise InputError("positions", f"{PRESET}: total {u} delta {d:,.0f} USD in "
                             f"{currency} exceeds delta_total_liq_shock_threshold {thr:,.0f}; "
                             "Deribit's delta shock above it is unpublished, so the preset "
                             "refuses rather than understate the margin")
    roll_total = float(sum(roll.values()))
    rmm = worst + ext_loss + roll_total
    mm = float(general["mm_factor"]) * rmm
    im = rmm + mmp + open_orders + spot
    return PMCurrencyResult(
        currency=currency, underlyings=unds,
        price_ranges={u: pairs[u]["price_range"] for u in unds}, pnl=pnl, pre_aggregated=pre,
        aggregated=agg, ext_pnl=ext_pnl, extended_aggregated=beyond, worst_index=w_i,
        worst_case=worst, extended_loss=ext_loss, roll_shock=roll_total,
        roll_shock_by_position=roll, delta_total_usd=d_usd, delta_shock=0.0,
        correlation_contingency=0.0, risk_matrix_margin=rmm, mmp_margin=mmp,
        open_orders_margin=open_orders, spot_margin=spot, initial_margin=im,
        maintenance_margin=mm)


def bucket_of(index: int, n: int, n_v: int) -> dict[str, Any]:
    """Deribit's ``worst_case_bucket`` fields of a standard-vector index."""
    j = index // n_v
    side = "left" if j < n else ("right" if j > n else "center")
    return {"index": index, "bucket": j + 1, "side": side, "source": "standard"}


class DeribitPMModel(BaseMarginModel):
    """Deribit segregated portfolio margin (see module docstring, docs/models/deribit-pm.md)."""

    name = "deribit-pm"
    default_config = "presets/deribit-pm.toml"

    def _validate(self, params: Mapping[str, Any]) -> None:
        check_meta(params)
        g = table(params, "general")
        n = g.get("buckets_count")
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 50:
            raise InputError("params.general.buckets_count", "must be an integer in [1, 50]")
        vs = g.get("vol_scenarios")
        if (not isinstance(vs, list) or not vs or len(set(vs)) != len(vs)
                or any(v not in VOL_NAMES for v in vs)):
            raise InputError("params.general.vol_scenarios",
                             f"must be distinct names from {VOL_NAMES}")
        number(g, "mm_factor", "general", 0.0, 1.0, lo_open=True)
        number(g, "dte_floor_days", "general", 0.0, 365.0, lo_open=True)
        if g.get("extended_fraction", "range") not in EXTENDED_FRACTIONS:
            raise InputError("params.general.extended_fraction",
                             f"must be one of {EXTENDED_FRACTIONS}")
        ext = g.get("extended_moves")
        if not isinstance(ext, list):
            raise InputError("params.general.extended_moves", "must be a list (may be empty)")
        for i, e in enumerate(ext):
            if isinstance(e, bool) or not isinstance(e, (int, float)) or not -1.0 < e <= 100.0:
                raise InputError(f"params.general.extended_moves[{i}]",
                                 "must be a number in (-1, 100]")
        for ccy, tab in table(params, "currency").items():
            path = f"currency.{ccy}"
            if not isinstance(tab, Mapping):
                raise InputError(f"params.{path}", "must be a table")
            number(tab, "pnl_offset", path, 0.0, 1.0)
            number(tab, "max_offsetable_pnl", path, 0.0)
            number(tab, "annualised_move_risk", path, 0.0, 10.0)
            number(tab, "min_annualised_move", path, 0.0, 1.0)
            number(tab, "extended_dampener", path, 0.0)
            if flag(tab, "correlation_set", path):
                raise InputError(f"params.{path}.correlation_set", "true is not supported: "
                                 "Deribit's correlation contingency is unpublished")
        for und, tab in table(params, "pair").items():
            path = f"pair.{und}"
            if not isinstance(tab, Mapping):
                raise InputError(f"params.{path}", "must be a table")
            number(tab, "price_range", path, 0.0, 0.99, lo_open=True)
            for k in ("volatility_range_up", "volatility_range_down", "short_term_vega_power",
                      "long_term_vega_power", "min_volatility_for_shock_up",
                      "extended_table_factor", "max_delta_shock"):
                number(tab, k, path, 0.0, 100.0)
            number(tab, "delta_total_liq_shock_threshold", path, 0.0)

    # -- inputs --------------------------------------------------------------------------------
    def positions(self, portfolio: Portfolio, market: MarketSnapshot
                  ) -> tuple[list[PMPosition], list[NetPosition], list[str]]:
        """Risk-matrix positions, their net positions, and the names of those left out.

        Left out (zero margin): settled (expired) contracts and long spot balances.
        """
        pairs = self.params["pair"]
        ccys = self.params["currency"]
        out: list[PMPosition] = []
        kept: list[NetPosition] = []
        settled: list[str] = []
        for pos in net_positions(portfolio):
            inst = pos.instrument
            if inst.kind is InstrumentKind.SPOT:
                if pos.quantity > 0.0:  # a fully paid balance: equity, not the risk matrix
                    settled.append(f"{pos.name} (spot, fully paid)")
                    continue
                raise unsupported(pos, PRESET, "short spot cannot be held on Deribit (spot "
                                  "orders enter through spot_margin in preset_inputs)")
            ccy = inst.settlement_currency
            if inst.underlying not in pairs:
                raise unsupported(pos, PRESET, f"no risk-matrix parameters for "
                                  f"{inst.underlying} (configured: {', '.join(pairs)})")
            if ccy not in ccys:
                raise unsupported(pos, PRESET, f"no parameters for settlement currency {ccy} "
                                  f"(configured: {', '.join(ccys)})")
            if inst.expiry is not None and inst.expiry <= market.timestamp:
                settled.append(pos.name)  # settled contracts carry no margin
                continue
            s = market.index(inst.underlying, f"index_prices.{inst.underlying}")
            tau = (0.0 if inst.expiry is None
                   else seconds_to_expiry(market, inst.expiry) / SECONDS_PER_YEAR)
            if inst.kind is InstrumentKind.OPTION:
                assert inst.expiry is not None and inst.strike is not None
                f = quoted_forward(market, inst.underlying, inst.expiry)
                base = (inst.underlying if inst.is_inverse
                        else f"{inst.underlying}_{inst.quote}")
                fut = f"{base}-{format_expiry(inst.expiry)}"
                if f is None:
                    f = market.mark_prices.get(fut)
                if f is None:
                    raise InputError(f"forwards.{inst.underlying}.{expiry_key(inst.expiry)}",
                                     f"missing: {PRESET} needs the forward of the option's "
                                     f"expiry (or the mark of {fut})")
                vol = require_vol(market, pos.name, PRESET)
                out.append(PMPosition(pos.name, inst.underlying, ccy, "option", inst.is_inverse,
                                      pos.quantity, float(f), s, tau, float(inst.strike),
                                      bool(inst.is_call), vol))
            else:
                price = market.mark_prices.get(pos.name)
                if price is None and inst.expiry is not None:
                    price = quoted_forward(market, inst.underlying, inst.expiry)
                if price is None:
                    raise InputError(f"mark_prices.{pos.name}", f"missing: {PRESET} needs the "
                                     f"mark of {pos.name} (no default)")
                q = pos.quantity / price if inst.is_inverse else pos.quantity
                kind = "perpetual" if inst.kind is InstrumentKind.PERPETUAL else "future"
                out.append(PMPosition(pos.name, inst.underlying, ccy, kind, inst.is_inverse, q,
                                      float(price), s, tau))
            kept.append(pos)
        return out, kept, settled

    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> MarginResult:
        pos, kept, settled = self.positions(portfolio, market)
        pi = PortfolioInputs(portfolio.preset_inputs)
        ccys = list(dict.fromkeys(p.currency for p in pos))
        for c in sorted(pi.deribit_currencies()):
            if c not in self.params["currency"]:
                raise InputError(f"portfolio.preset_inputs.mmp_margin.{c}",
                                 f"{c} is not a configured settlement currency")
            if c not in ccys:
                ccys.append(c)
        results: list[PMCurrencyResult] = []
        for c in ccys:
            sub = [p for p in pos if p.currency == c]
            results.append(evaluate_currency(sub, c, self.params, pi.mmp_margin(c),
                                             pi.open_orders_margin(c), pi.spot_margin(c)))
        return self._result(pos, kept, settled, results, market)

    # -- output --------------------------------------------------------------------------------
    def _result(self, pos: list[PMPosition], kept: list[NetPosition], settled: list[str],
                results: list[PMCurrencyResult], market: MarketSnapshot) -> MarginResult:
        general = self.params["general"]
        n = int(general["buckets_count"])
        vol_names = tuple(general["vol_scenarios"])
        n_v = len(vol_names)
        ext_moves = [float(e) for e in general["extended_moves"]]
        single = len(results) <= 1
        currency = results[0].currency if len(results) == 1 else "USD"
        usd = {r.currency: self._usd_rate(r.currency, market) for r in results}
        scale = {c: (1.0 if single else usd[c]) for c in usd}
        ranges = {u: v for r in results for u, v in r.price_ranges.items()}
        unit = (np.arange(2 * n + 1) - n) / n
        same = len(set(ranges.values())) == 1
        labels = [(f"move {u * next(iter(ranges.values())):+.1%}" if same
                   else f"move {u:+.2f} x range") + f", vol {v}" for u in unit for v in vol_names]
        labels += [f"extended move {e:+.0%}, vol up" for e in ext_moves]
        n_std = len(unit) * n_v
        pnl = np.zeros((len(labels), len(pos)))
        contrib = np.zeros(len(pos))
        worst: list[WorstScenario] = []
        components: dict[str, float] = {}
        per_ccy: dict[str, Any] = {}
        matrices: list[dict[str, Any]] = []
        for r in results:
            k = scale[r.currency]
            glob = [i for i, p in enumerate(pos) if p.currency == r.currency]
            pnl[:n_std, glob] = r.pnl * k
            pnl[n_std:, glob] = r.ext_pnl * k
            contrib[glob] = -r.pnl[r.worst_index] * k
            worst.append(WorstScenario(f"{r.currency}: {labels[r.worst_index]}", r.worst_index,
                                       r.worst_case * k, r.currency))
            rows = [", ".join(f"{u} {r.price_ranges[u] * x:+.1%}" for u in r.underlyings)
                    for x in unit] if r.underlyings else [f"{x:+.2f} x range" for x in unit]
            matrices.append(risk_matrix(
                f"Deribit PM risk matrix, {r.currency} (aggregated P&L after pnl_offset, "
                "gains positive)", "move", rows, [f"vol {v}" for v in vol_names],
                r.aggregated.reshape(len(unit), n_v)))
            pre = "" if single else f"{r.currency}:"
            comp = {"worst_case": r.worst_case, "extended_loss": r.extended_loss,
                    "roll_shock": r.roll_shock, "delta_shock": r.delta_shock,
                    "correlation_contingency": r.correlation_contingency,
                    "mmp_margin": r.mmp_margin, "open_orders_margin": r.open_orders_margin,
                    "spot_margin": r.spot_margin}
            components.update({pre + key: v * k for key, v in comp.items()})
            per_ccy[r.currency] = _currency_details(r, pos, n, n_v, usd[r.currency])
        im = sum(r.initial_margin * scale[r.currency] for r in results)
        mm = sum(r.maintenance_margin * scale[r.currency] for r in results)
        details: dict[str, Any] = {
            "convention": ("positive requirements in the settlement currency (one currency), "
                           "or their sum in USD at the index (several currencies)"),
            "by_currency": per_ccy,
            "initial_margin_usd": sum(r.initial_margin * usd[r.currency] for r in results),
            "maintenance_margin_usd": sum(r.maintenance_margin * usd[r.currency]
                                          for r in results),
            "settled_positions": settled,
            "extended_table": EXTENDED_ASSUMPTION[str(general.get("extended_fraction",
                                                                  "range"))],
            "assumptions": [EXTENDED_ASSUMPTION[str(general.get("extended_fraction",
                                                                "range"))]] if ext_moves else [],
        }
        ext_usd = sum(r.extended_loss * usd[r.currency] for r in results)
        im_usd = details["initial_margin_usd"]
        if im_usd > 0 and ext_usd > UNVERIFIED_WARN * im_usd:
            details["warnings"] = [
                f"deribit-pm: {ext_usd / im_usd:.0%} of this margin is the extended table, an "
                "unpublished rule read by us: Deribit's own figure may be far from it"]
        if matrices:
            binding = max(range(len(matrices)), key=lambda i: worst[i].loss)
            details["risk_matrix"] = matrices[binding]
            details["risk_matrices"] = matrices
        return MarginResult(
            model=self.name, params_hash=self.params_hash, market_timestamp=market.timestamp,
            currency=currency, initial_margin=float(im), maintenance_margin=float(mm),
            worst_scenarios=tuple(worst), scenario_labels=tuple(labels), scenario_pnl=pnl,
            position_names=tuple(p.name for p in pos), contributions=contrib,
            greeks=preset_greeks(kept, market), components=components, details=details)

    @staticmethod
    def _usd_rate(currency: str, market: MarketSnapshot) -> float:
        """USD per unit of a settlement currency: the index (stable coins: index or 1.0)."""
        if currency in ("USDC", "USDT"):
            return float(market.index_prices.get(currency, 1.0))
        return market.index(currency, f"index_prices.{currency}")


def _currency_details(r: PMCurrencyResult, pos: Sequence[PMPosition], n: int, n_v: int,
                      usd_rate: float) -> dict[str, Any]:
    mine = [p for p in pos if p.currency == r.currency]
    by_und = {u: r.pnl[:, [i for i, p in enumerate(mine) if p.underlying == u]].sum(axis=1)
              for u in r.underlyings}
    return {
        "initial_margin": r.initial_margin,
        "maintenance_margin": r.maintenance_margin,
        "risk_matrix_margin": r.risk_matrix_margin,
        "risk_matrix_margin_details": {
            "worst_case": r.worst_case,
            "worst_case_bucket": bucket_of(r.worst_index, n, n_v),
            "extended_loss": r.extended_loss,
            "roll_shock": r.roll_shock,
            "delta_shock": r.delta_shock,
            "correlation_contingency": r.correlation_contingency,
        },
        "mmp_margin": r.mmp_margin,
        "open_orders_margin": r.open_orders_margin,
        "spot_margin": r.spot_margin,
        "aggregated_risk_vector": {"standard": r.aggregated.tolist(),
                                   "extended": r.extended_aggregated.tolist()},
        "pre_aggregated_risk_vector": {"standard": r.pre_aggregated.tolist(),
                                       "extended": r.ext_pnl.sum(axis=1).tolist()},
        "pre_aggregated_by_underlying": {u: v.tolist() for u, v in by_und.items()},
        "price_range": dict(r.price_ranges),
        "roll_shock_by_position": dict(r.roll_shock_by_position),
        "delta_total_usd": dict(r.delta_total_usd),
        "usd_per_unit": usd_rate,
    }
