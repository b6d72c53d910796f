"""``grid``: scenario-grid portfolio margin.

Method: each underlying moves by ``range * j / n`` (``j = -n..n``) while option vols take
``down / none / up`` shocks scaled by ``(30 / DTE) ** power``; every position is revalued in full
(:func:`marginproof.scenarios.scenario_pnl_usd`). Per underlying, the requirement is the worst
scenario loss, floored by a short-option minimum; with no cross-underlying offset (default) the
account IM is the sum over underlyings, otherwise the worst joint scenario.
``MM = mm_fraction * IM``.

Contributions: each position's loss in the binding scenario of its underlying (they add up to
the scenario-loss component).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.instruments.portfolio import Portfolio
from marginproof.instruments.resolved import ResolvedBook, resolve
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import BaseMarginModel
from marginproof.models.result import MarginResult, WorstScenario, aggregate_greeks
from marginproof.scenarios.revalue import scenario_pnl_usd

_VOL_SIGN = {"down": -1, "none": 0, "up": 1}


def vol_shock_scale(t_years: NDArray[np.float64], short_power: float, long_power: float,
                    dte_floor_days: float) -> NDArray[np.float64]:
    """``(30 / DTE) ** power`` with the short-term power for DTE <= 30, shape (n,)."""
    dte = np.maximum(t_years * 365.0, dte_floor_days)
    return np.where(dte <= 30.0, (30.0 / dte) ** short_power, (30.0 / dte) ** long_power)


class GridModel(BaseMarginModel):
    """Scenario-grid portfolio margin (see module docstring)."""

    name = "grid"
    default_config = "models/grid.toml"

    def _validate(self, params: Mapping[str, Any]) -> None:
        g = params.get("grid")
        if not isinstance(g, Mapping):
            raise InputError("params.grid", "missing [grid] table")
        n = g.get("buckets_per_side")
        if not isinstance(n, int) or n < 1:
            raise InputError("params.grid.buckets_per_side", "must be an integer >= 1")
        for vs in g.get("vol_shocks", []):
            if vs not in _VOL_SIGN:
                raise InputError("params.grid.vol_shocks", f"unknown shock {vs!r}")
        for und, r in g.get("price_range", {}).items():
            if not (0.0 < float(r) < 1.0):
                raise InputError(f"params.grid.price_range.{und}", "must be in (0, 1)")
        mm = params.get("maintenance", {}).get("mm_fraction")
        if not isinstance(mm, (int, float)) or not 0.0 < mm <= 1.0:
            raise InputError("params.maintenance.mm_fraction", "must be in (0, 1]")

    # -- scenario construction -------------------------------------------------------------
    def scenario_axes(self) -> tuple[NDArray[np.float64], tuple[str, ...]]:
        """Unit moves ``j/n`` (shape (n_moves,)) and vol-shock names, scenario = (move, vol)."""
        g = self.params["grid"]
        n = int(g["buckets_per_side"])
        return np.arange(-n, n + 1) / n, tuple(g["vol_shocks"])

    def scenario_labels(self) -> tuple[str, ...]:
        labels: tuple[str, ...] | None = self.__dict__.get("_labels")
        if labels is None:  # parameters are frozen: built once per model
            unit, shocks = self.scenario_axes()
            labels = tuple(f"move={u:+.0%}*range,vol={v}" for u in unit for v in shocks)
            self.__dict__["_labels"] = labels
        return labels

    def price_range(self, underlying: str) -> float:
        pr = self.params["grid"]["price_range"]
        return float(pr.get(underlying, pr["default"]))

    def scenario_matrices(
        self, book: ResolvedBook
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Moves, vol multipliers and vol floors, each shape (n_scenarios, n_positions)."""
        g = self.params["grid"]
        unit, shocks = self.scenario_axes()
        ranges = np.array([self.price_range(book.underlyings[i]) for i in book.underlying_idx])
        moves_u = np.repeat(unit, len(shocks))  # (n_scen,)
        sign = np.tile(np.array([_VOL_SIGN[s] for s in shocks], float), len(unit))
        moves = moves_u[:, None] * ranges[None, :]
        f = vol_shock_scale(book.t_years, float(g["short_term_vega_power"]),
                            float(g["long_term_vega_power"]), float(g["dte_floor_days"]))
        up = 1.0 + float(g["vol_range_up"]) * f
        down = np.maximum(1.0 - float(g["vol_range_down"]) * f, 0.0)
        vol_mult = np.where(sign[:, None] > 0, up[None, :],
                            np.where(sign[:, None] < 0, down[None, :], 1.0))
        floor = np.where(sign[:, None] > 0, float(g["min_vol_shock_up"]), 0.0)
        vol_floor = np.broadcast_to(floor, moves.shape).copy()
        return moves, vol_mult, vol_floor

    def _group_label(self, group: str, j: int) -> str:
        unit, shocks = self.scenario_axes()
        u, v = unit[j // len(shocks)], shocks[j % len(shocks)]
        if group == "portfolio":
            return f"move {u:+.0%} of range, vol {v}"
        return f"{group} {u * self.price_range(group):+.1%}, vol {v}"

    # -- margin ----------------------------------------------------------------------------
    def margin(self, portfolio: Portfolio, market: MarketSnapshot) -> MarginResult:
        book = resolve(portfolio, market)
        labels = self.scenario_labels()
        moves, vol_mult, vol_floor = self.scenario_matrices(book)
        pnl = scenario_pnl_usd(book, moves, vol_mult, vol_floor)  # (n_scen, n_pos)
        cross = bool(self.params["grid"].get("cross_underlying_offset", False))
        groups = ([("portfolio", np.ones(len(book), bool))] if cross else
                  [(u, book.underlying_idx == i) for i, u in enumerate(book.underlyings)])
        rate = float(self.params.get("minimums", {}).get("short_option_rate", 0.0))
        contributions = np.zeros(len(book))
        worst: list[WorstScenario] = []
        components: dict[str, float] = {}
        im = 0.0
        for gname, mask in groups:
            total = pnl[:, mask].sum(axis=1)
            j = int(np.argmin(total)) if total.size else 0
            loss = max(0.0, -float(total[j])) if total.size else 0.0
            opt = mask & book.is_option
            net_short = 0.0
            minimum = 0.0
            for u in np.unique(book.underlying_idx[opt]):
                um = opt & (book.underlying_idx == u)
                net_short = max(0.0, -float(book.quantity[um].sum()))
                minimum += rate * net_short * float(book.index[um][0])
            req = max(loss, minimum)
            components[f"scenario_loss:{gname}"] = loss
            components[f"short_option_minimum:{gname}"] = minimum
            worst.append(WorstScenario(self._group_label(gname, j), j, loss, gname))
            contributions[mask] = -pnl[j, mask]
            im += req
        mm = float(self.params["maintenance"]["mm_fraction"]) * im
        return MarginResult(
            model=self.name,
            params_hash=self.params_hash,
            market_timestamp=market.timestamp,
            currency="USD",
            initial_margin=im,
            maintenance_margin=mm,
            worst_scenarios=tuple(worst),
            scenario_labels=labels,
            scenario_pnl=pnl,
            position_names=book.names,
            contributions=contributions,
            greeks=aggregate_greeks(book),
            components=components,
            details={"price_range": {u: self.price_range(u) for u in book.underlyings},
                     "cross_underlying_offset": cross},
        )
