"""Market response to a margin increase: would it feed a liquidation spiral? If so, phase it.

When a recalibration (a new volatility, surface, depth or funding state, or a parameter change)
would raise the called margin of many accounts at once, the live path first runs the
liquidation-cascade simulation (:func:`marginproof.stress.cascade.simulate_cascade`) on the live
book against the live order-book depth:

* every account with a delta on the book's underlying is one cascade account: its net delta
  (coins) is its position, its equity its collateral, and its MM rate ``mm / (|delta| P)``
  per account (the cascade accepts one rate per account); the price path is flat at the index
  (the question is what the *margin change* does, not a market move);
* the simulation is run twice, with the current called margin and with the new margin applied
  at once; the difference of the liquidated volume is the **forced selling** the increase
  would trigger, reported against the depth within ``depth_band`` of the mid (the thinner side);
* when that forced selling exceeds ``max_forced_to_depth`` of the depth, applying the increase
  at once would feed a spiral: the increase is **phased** -- for ``phase_hours`` the speed
  limit's rise rate and coverage floor drop to the phase values (:class:`~marginproof.apc.live.
  PhaseParams`), which gives accounts time to add collateral (the cascade assumes none does,
  the worst case).

The check runs only when at least ``min_share`` of the re-margined accounts (and at least
``min_accounts``) would see their called margin rise by more than ``rise_threshold``.
Simplifications (stated in ``docs/models/apc.md``): one underlying per check, delta only
(options by their delta), an account's whole equity and MM set against that delta.
Parameters come from the model's ``[apc.market_response]`` table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.stress.cascade import OrderBook, Population, simulate_cascade

FloatArray = NDArray[np.float64]


def _num(sec: Mapping[str, Any], key: str, lo: float, hi: float, default: float) -> float:
    v = sec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= float(v) <= hi):
        raise InputError(f"params.apc.market_response.{key}",
                         f"must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


@dataclass(frozen=True)
class MarketResponseParams:
    """When to run the cascade check and when to phase (``[apc.market_response]``).

    Attributes
    ----------
    enabled : bool
    rise_threshold : float
        An account counts as rising when its called margin would rise by more than this.
    min_share : float
        Share of the re-margined accounts that must be rising for the check to run.
    min_accounts : int
        ... and at least this many.
    depth_band : float
        Relative distance from mid within which depth is counted (0.02 = 2 %).
    max_forced_to_depth : float
        Phase when forced selling / depth exceeds this.
    phase_hours : float
        Length of the phase.
    """

    enabled: bool = False
    rise_threshold: float = 0.10
    min_share: float = 0.25
    min_accounts: int = 10
    depth_band: float = 0.02
    max_forced_to_depth: float = 0.5
    phase_hours: float = 12.0

    @classmethod
    def from_model_params(cls, params: Mapping[str, Any]) -> MarketResponseParams:
        apc = params.get("apc")
        if not isinstance(apc, Mapping):
            return cls()
        mr = apc.get("market_response", {})
        if not isinstance(mr, Mapping):
            raise InputError("params.apc.market_response", "must be a table")
        en = mr.get("enabled", False)
        if not isinstance(en, bool):
            raise InputError("params.apc.market_response.enabled", "must be true or false")
        return cls(en, _num(mr, "rise_threshold", 0.0, 10.0, 0.10),
                   _num(mr, "min_share", 0.0, 1.0, 0.25),
                   int(_num(mr, "min_accounts", 1, 1e9, 10)),
                   _num(mr, "depth_band", 1e-4, 0.5, 0.02),
                   _num(mr, "max_forced_to_depth", 0.0, 1e6, 0.5),
                   _num(mr, "phase_hours", 0.0, 24.0 * 30, 12.0))


@dataclass(frozen=True)
class MarketResponseReport:
    """Outcome of one check (JSON-ready via :meth:`to_dict`)."""

    underlying: str
    n_accounts: int
    n_rising: int
    share_rising: float
    checked: bool
    forced_selling_usd: float
    depth_usd: float
    forced_to_depth: float
    price_impact_pct: float
    liquidated_accounts: int
    phase: bool
    phase_until_ms: int | None
    forced_selling_phased_usd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def depth_within(book: OrderBook, band: float) -> float:
    """USD depth within ``band`` of the mid on the thinner side of ``book``."""
    def side(p: Any) -> float:
        return float(np.interp(band, p.distance, p.depth_usd)) if band <= p.distance[-1] \
            else float(p.depth_usd[-1] + (band - p.distance[-1]) * p.density_usd)
    return min(side(book.bid), side(book.ask))


def _cascade(coins: FloatArray, equity: FloatArray, mm: FloatArray, price: float,
             book: OrderBook) -> tuple[float, float, int]:
    """(liquidated USD, |max impact| %, accounts) of the accounts with MM ``mm`` (flat price)."""
    notional = coins * price
    rate = mm / np.abs(notional)  # MM per USD of notional; mm_fraction 1 below
    cushion = equity / (rate * np.abs(notional)) - 1.0
    res = simulate_cascade("live", np.array([price]), ["now"], rate[None, :], rate[None, :], 1.0,
                           book, Population(notional, cushion))
    t = res.totals
    return float(t["liquidated_usd"]), float(t["max_price_impact_pct"]), \
        int(t["liquidated_accounts"])


def assess(underlying: str, current_im: FloatArray, new_im: FloatArray, mm_ratio: FloatArray,
           equity: FloatArray, delta_coins: FloatArray, price: float, book: OrderBook,
           params: MarketResponseParams, now_ms: int,
           phased_im: FloatArray | None = None) -> MarketResponseReport:
    """Run the check on the accounts of one recalibration (arrays of shape (n,)).

    Parameters
    ----------
    underlying : str
        Underlying of ``book`` and ``delta_coins``.
    current_im, new_im : ndarray
        Called IM now and if the recalibration were applied at once (USD).
    mm_ratio : ndarray
        MM / IM of each account.
    equity : ndarray
        Account equity (USD).
    delta_coins : ndarray
        Net delta on ``underlying`` (coins, signed).
    price : float
        Index of ``underlying``.
    book : OrderBook
        Live depth.
    phased_im : ndarray, optional
        Called IM under the phase limits (its forced selling is reported).
    """
    n = int(current_im.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = (current_im > 0.0) & (new_im > current_im * (1.0 + params.rise_threshold))
    n_rising = int(rising.sum())
    share = n_rising / n if n else 0.0
    if not params.enabled or n_rising < params.min_accounts or share < params.min_share:
        return MarketResponseReport(underlying, n, n_rising, share, False, 0.0, 0.0, 0.0, 0.0,
                                    0, False, None)
    live = (delta_coins != 0.0) & np.isfinite(delta_coins) & (new_im > 0.0)
    c, e = delta_coins[live], equity[live]
    base_liq, base_imp, base_n = _cascade(c, e, (current_im * mm_ratio)[live], price, book)
    new_liq, new_imp, new_n = _cascade(c, e, (new_im * mm_ratio)[live], price, book)
    forced = max(0.0, new_liq - base_liq)
    depth = depth_within(book, params.depth_band)
    ratio = forced / depth if depth > 0 else float("inf")
    phase = ratio > params.max_forced_to_depth
    phased = None
    if phase and phased_im is not None:
        ph_liq, _, _ = _cascade(c, e, (phased_im * mm_ratio)[live], price, book)
        phased = max(0.0, ph_liq - base_liq)
    until = int(now_ms + params.phase_hours * 3_600_000) if phase else None
    return MarketResponseReport(underlying, n, n_rising, share, True, forced, depth, ratio,
                                new_imp - base_imp, new_n - base_n, phase, until, phased)
