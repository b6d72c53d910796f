"""Live risk factors: state rebuilt only from input-log entries, frozen for the models to read.

What runs live (``docs/models/dynamic.md``, "What runs live"):

* **EWMA volatility per underlying** from live index returns sampled on a fixed grid of
  ``sample_ms`` (default one hour, times ``k * sample_ms`` since the epoch). The sample of an
  interval is the first accepted index price at or after its grid time; its log return to the
  previous sample updates the *daily* variance
  ``s2 <- lam_s**m s2 + (1 - lam_s**m) r**2 * DAY / (m * sample_ms)`` with
  ``lam_s = lam ** (sample_ms / DAY)`` (:func:`rescaled_decay`), so the half-life in days is the
  model's (``m`` intervals elapsed since the previous sample; a gap counts as one observation
  over the whole gap). The state is seeded with the model's own daily EWMA forecast
  ``sigma_next(T)`` of the as-of day ``T`` (shipped daily history), so at the seed the live
  model *is* the batch model.
* **ATM implied-vol factor**: the same recursion on log changes of the underlying's live ATM
  vol (from option mark IVs), seeded with the daily EWMA of the ATM-IV changes.
* **Scenario draws** (Monte Carlo): drawn only at a draw entry (the seeding market entry, a
  ``recalibrate`` entry, the first entry of a new as-of day) with the seed
  :func:`draw_seed` derived from the model's seed and that entry's ``seq`` and ``logged_at_ms``,
  so the published state pins them.
* **Order-book depth** per underlying (``depth`` entries) and the **valuation time** (one for
  the whole engine, on the sampling grid).

:class:`RiskFactorState` is the frozen, hashable view the models are bound to
(:meth:`marginproof.models.base.BaseMarginModel.with_factors`); :class:`LiveRiskFactors` is
the engine's mutable tracker that produces it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError

DAY_MS = 86_400_000
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class LiveConfig:
    """Live settings of a model (``[live]`` table of its parameters; defaults documented).

    Attributes
    ----------
    sample_ms : int
        Sampling interval of the live EWMA and step of the valuation clock (1 h).
    depth_max_age_ms : int
        A depth book older than this (log clock) is stale: kept, alerted, margins held (60 s).
    depth_levels : int
        Levels per side kept from a depth entry (50).
    """

    sample_ms: int = 3_600_000
    depth_max_age_ms: int = 60_000
    depth_levels: int = 50

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LiveConfig:
        live = params.get("live", {})
        if not isinstance(live, Mapping):
            raise InputError("params.live", "must be a table")
        out = cls()
        for key, lo, hi in (("sample_ms", 1_000, DAY_MS), ("depth_max_age_ms", 1_000, DAY_MS),
                            ("depth_levels", 1, 5_000)):
            v = live.get(key, getattr(out, key))
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise InputError(f"params.live.{key}", f"must be an integer in [{lo}, {hi}]")
            out = replace(out, **{key: v})
        if DAY_MS % out.sample_ms:
            raise InputError("params.live.sample_ms", "must divide one day (86,400,000 ms)")
        return out


def rescaled_decay(lam_daily: float, sample_ms: int) -> float:
    """Per-sample decay ``lam ** (sample_ms / DAY)`` that keeps the daily half-life."""
    if not 0.0 < lam_daily < 1.0:
        raise InputError("lambda", f"must be in (0, 1), got {lam_daily!r}")
    return float(lam_daily ** (sample_ms / DAY_MS))


def ewma_sample_update(var_daily: float, log_return: float, lam_daily: float, sample_ms: int,
                       n_intervals: int) -> float:
    """Daily variance after one sampled return spanning ``n_intervals`` grid intervals."""
    if n_intervals < 1:
        raise ValueError("n_intervals must be >= 1")
    w = rescaled_decay(lam_daily, sample_ms) ** n_intervals
    per_day = log_return * log_return * DAY_MS / (n_intervals * sample_ms)
    return float(w * var_daily + (1.0 - w) * per_day)


def draw_seed(model_seed: int, seq: int, logged_at_ms: int) -> int:
    """Scenario-draw seed of a draw entry: 63 bits of SHA-256 of ``seed:seq:logged_at``."""
    raw = hashlib.sha256(f"{int(model_seed)}:{int(seq)}:{int(logged_at_ms)}".encode()).digest()
    return int.from_bytes(raw[:8], "big") >> 1


@dataclass(frozen=True)
class UnderlyingVol:
    """Live vol state of one underlying (decimal, per day).

    Attributes
    ----------
    sigma_daily, iv_sigma_daily : float
        Live EWMA vol of index log returns and of ATM-IV log changes.
    seed_sigma_daily, seed_iv_sigma_daily : float
        Their seed values (the model's daily forecasts for ``seed_asof``).
    seed_asof : str
        As-of day of the seed.
    last_sample_ms : int
        Grid time of the last sample; ``last_index`` its price, ``last_atm_iv`` its ATM vol.
    n_samples : int
        Live samples since the seed.
    """

    sigma_daily: float
    iv_sigma_daily: float
    seed_sigma_daily: float
    seed_iv_sigma_daily: float
    seed_asof: str
    last_sample_ms: int
    last_index: float
    last_atm_iv: float | None = None
    n_samples: int = 0


@dataclass(frozen=True)
class DepthFactor:
    """Last good order book of an underlying (levels best first, USD and coins).

    Attributes
    ----------
    exchange_ms : int
    bid_px, bid_qty, ask_px, ask_qty : ndarray, shape (n_levels,)
    """

    exchange_ms: int
    bid_px: FloatArray
    bid_qty: FloatArray
    ask_px: FloatArray
    ask_qty: FloatArray

    @property
    def mid(self) -> float:
        return 0.5 * (float(self.bid_px[0]) + float(self.ask_px[0]))

    @property
    def spread_rel(self) -> float:
        """Relative bid-ask spread ``(ask - bid) / mid``."""
        return (float(self.ask_px[0]) - float(self.bid_px[0])) / self.mid

    def book(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        return self.bid_px, self.bid_qty, self.ask_px, self.ask_qty

    def digest(self) -> str:
        h = hashlib.sha256(str(self.exchange_ms).encode())
        for a in self.book():
            h.update(np.ascontiguousarray(a, np.float64).tobytes())
        return h.hexdigest()


def parse_depth(body: Mapping[str, Any], levels: int) -> tuple[str, DepthFactor]:
    """``(underlying, book)`` of a ``depth`` entry body; raises ``InputError`` naming the field.

    Body: ``{underlying, exchange_ms, bids: [[price, qty], ...], asks: [...]}``, best first.
    A crossed, unsorted, empty or non-positive book is refused.
    """
    und = body.get("underlying")
    if not isinstance(und, str) or not und:
        raise InputError("depth.underlying", "must be a non-empty string")
    ts = body.get("exchange_ms")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise InputError("depth.exchange_ms", "must be an integer (ms since epoch)")
    sides = []
    for name, desc in (("bids", True), ("asks", False)):
        raw = body.get(name)
        if not isinstance(raw, list) or not raw:
            raise InputError(f"depth.{name}", "must be a non-empty list of [price, qty]")
        try:
            a = np.array(raw[:levels], dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"depth.{name}", "levels must be [price, qty] numbers") from None
        if a.ndim != 2 or a.shape[1] != 2:
            raise InputError(f"depth.{name}", "levels must be [price, qty] pairs")
        if not np.all(np.isfinite(a)) or np.any(a <= 0.0):
            raise InputError(f"depth.{name}", "prices and sizes must be finite and positive")
        d = np.diff(a[:, 0])
        if np.any(d >= 0.0) if desc else np.any(d <= 0.0):
            raise InputError(f"depth.{name}", "levels must be strictly ordered best first")
        sides.append(a)
    bids, asks = sides
    if bids[0, 0] >= asks[0, 0]:
        raise InputError("depth", f"crossed book: bid {bids[0, 0]} >= ask {asks[0, 0]}")
    return und, DepthFactor(ts, bids[:, 0].copy(), bids[:, 1].copy(), asks[:, 0].copy(),
                            asks[:, 1].copy())


@dataclass(frozen=True)
class RiskFactorState:
    """The frozen live risk-factor state a model is bound to (see module docstring).

    Attributes
    ----------
    valuation_ms : int
        Valuation time of every position (on the sampling grid, or the seed time).
    sample_ms : int
    lam : float
        Daily EWMA decay the vols use.
    vols : Mapping[str, UnderlyingVol]
    draw_seq, draw_seed : int
        Entry that drew the scenario sets and the seed derived from it (0, 0: none).
    depth : Mapping[str, DepthFactor]
    """

    valuation_ms: int
    sample_ms: int
    lam: float
    vols: Mapping[str, UnderlyingVol] = field(default_factory=dict)
    draw_seq: int = 0
    draw_seed: int = 0
    depth: Mapping[str, DepthFactor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "vols", MappingProxyType(dict(sorted(self.vols.items()))))
        object.__setattr__(self, "depth", MappingProxyType(dict(sorted(self.depth.items()))))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # the read-only mappings do not pickle; the state crosses to the what-if workers
        return (RiskFactorState, (self.valuation_ms, self.sample_ms, self.lam, dict(self.vols),
                                  self.draw_seq, self.draw_seed, dict(self.depth)))

    def sigma(self, underlying: str) -> float | None:
        v = self.vols.get(underlying)
        return None if v is None else v.sigma_daily

    def iv_sigma(self, underlying: str) -> float | None:
        v = self.vols.get(underlying)
        return None if v is None else v.iv_sigma_daily

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what a record publishes; floats as ``repr`` strings)."""
        return {
            "valuation_ms": self.valuation_ms, "sample_ms": self.sample_ms,
            "lambda": repr(self.lam), "draw_seq": self.draw_seq, "draw_seed": self.draw_seed,
            "vols": {u: {"sigma_daily": repr(v.sigma_daily),
                         "iv_sigma_daily": repr(v.iv_sigma_daily),
                         "seed_sigma_daily": repr(v.seed_sigma_daily),
                         "seed_iv_sigma_daily": repr(v.seed_iv_sigma_daily),
                         "seed_asof": v.seed_asof, "last_sample_ms": v.last_sample_ms,
                         "last_index": repr(v.last_index),
                         "last_atm_iv": None if v.last_atm_iv is None else repr(v.last_atm_iv),
                         "n_samples": v.n_samples} for u, v in self.vols.items()},
            "depth": {u: {"exchange_ms": d.exchange_ms, "digest": d.digest()}
                      for u, d in self.depth.items()},
        }

    def digest(self) -> str:
        """SHA-256 of :meth:`to_dict` (canonical JSON): equal digests = equal factor state."""
        raw = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(b"\x16" + raw).hexdigest()


class LiveRiskFactors:
    """The engine's mutable tracker of the live factors (deterministic in the log).

    Parameters
    ----------
    lam : float
        Daily EWMA decay (the model's ``lambda``; 0.94 when the model has none).
    config : LiveConfig
    """

    def __init__(self, lam: float, config: LiveConfig) -> None:
        self.lam = float(lam)
        self.config = config
        self.vols: dict[str, UnderlyingVol] = {}
        self.depth: dict[str, DepthFactor] = {}
        self.valuation_ms = 0
        self.draw_seq = 0
        self.draw_seed = 0
        self._frozen: RiskFactorState | None = None

    # -- valuation clock -----------------------------------------------------------------------
    def grid_time(self, t_ms: int) -> int:
        s = self.config.sample_ms
        return (int(t_ms) // s) * s

    def advance_valuation(self, t_ms: int) -> bool:
        """Move the valuation time to the grid time of ``t_ms`` if later; True if it moved."""
        g = self.grid_time(t_ms)
        if g > self.valuation_ms:
            self.valuation_ms = g
            self._frozen = None
            return True
        return False

    def set_valuation(self, t_ms: int) -> None:
        """Set the valuation time (a full market snapshot fixes it at its own time)."""
        self.valuation_ms = int(t_ms)
        self._frozen = None

    # -- vols ----------------------------------------------------------------------------------
    def seed(self, underlying: str, sigma_daily: float, iv_sigma_daily: float, asof: str,
             t_ms: int, index: float, atm_iv: float | None = None) -> None:
        """(Re)seed an underlying's vols from the daily history (a market entry)."""
        for name, v in (("sigma", sigma_daily), ("iv_sigma", iv_sigma_daily)):
            if not (math.isfinite(v) and v > 0.0):
                raise InputError(f"risk_factors.{underlying}.{name}", f"must be > 0, got {v!r}")
        self.vols[underlying] = UnderlyingVol(sigma_daily, iv_sigma_daily, sigma_daily,
                                              iv_sigma_daily, asof, self.grid_time(t_ms),
                                              float(index), atm_iv, 0)
        self._frozen = None

    def observe_index(self, underlying: str, t_ms: int, index: float,
                      atm_iv: float | None = None) -> tuple[float, float] | None:
        """Feed an accepted index price; on a new grid interval, update the EWMA.

        Returns
        -------
        (old, new) sigma_daily when a sample was taken, else None.
        """
        v = self.vols.get(underlying)
        if v is None:
            return None
        g = self.grid_time(t_ms)
        if g <= v.last_sample_ms:
            return None
        s = self.config.sample_ms
        m = (g - v.last_sample_ms) // s
        r = math.log(float(index) / v.last_index)
        var = ewma_sample_update(v.sigma_daily ** 2, r, self.lam, s, m)
        iv_var = v.iv_sigma_daily ** 2
        new_iv = v.last_atm_iv
        if atm_iv is not None and v.last_atm_iv is not None and atm_iv > 0.0:
            iv_var = ewma_sample_update(iv_var, math.log(atm_iv / v.last_atm_iv), self.lam, s, m)
            new_iv = atm_iv
        elif atm_iv is not None and atm_iv > 0.0:
            new_iv = atm_iv
        self.vols[underlying] = replace(v, sigma_daily=math.sqrt(var),
                                        iv_sigma_daily=math.sqrt(iv_var), last_sample_ms=g,
                                        last_index=float(index), last_atm_iv=new_iv,
                                        n_samples=v.n_samples + 1)
        self._frozen = None
        return v.sigma_daily, math.sqrt(var)

    # -- depth, draws ---------------------------------------------------------------------------
    def set_depth(self, underlying: str, book: DepthFactor) -> None:
        self.depth[underlying] = book
        self._frozen = None

    def set_draw(self, seq: int, seed: int) -> None:
        self.draw_seq, self.draw_seed = int(seq), int(seed)
        self._frozen = None

    def freeze(self) -> RiskFactorState:
        """The current state, frozen (cached until the next change)."""
        if self._frozen is None:
            self._frozen = RiskFactorState(self.valuation_ms, self.config.sample_ms, self.lam,
                                           dict(self.vols), self.draw_seq, self.draw_seed,
                                           dict(self.depth))
        return self._frozen
