"""Forecast settings: horizon, steps, paths, seed, method (frozen, validated)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from marginproof.config.params import params_hash
from marginproof.errors import InputError

METHODS = ("auto", "exact", "proxy")
MAX_HORIZON_HOURS = 24.0 * 30
MAX_STEPS = 24 * 30


@dataclass(frozen=True)
class ForecastConfig:
    """How a margin forecast is run.

    Attributes
    ----------
    horizon_hours : float
        Forecast horizon (default 24 h; 0 gives today's margin only).
    step_hours : float
        Reporting and monitoring step (default 1 h); ``horizon_hours / step_hours`` must be
        a whole number of steps.
    n_paths : int
        Simulated paths of the risk factors.
    seed : int
        Seed of every random draw (same seed, same inputs: same result, bit for bit).
    quantiles : tuple of float
        Levels of the fan chart, each in (0, 1).
    es_conf : float
        Confidence of the expected shortfall of the excess at the horizon.
    method : str
        ``exact`` (full revaluation of every path and step), ``proxy`` (interpolated value
        lattices, see ``docs/models/forecast.md``) or ``auto`` (proxy when the full
        revaluation would price more than ``auto_proxy_above`` options).
    auto_proxy_above : float
        Threshold of ``auto`` in option valuations.
    warn_threshold : float
        Probability of a margin call within the horizon above which a warning is due.
    funding : bool
        Simulate perpetual funding payments into equity.
    call_levels : bool
        Compute the call levels per underlying.
    """

    horizon_hours: float = 24.0
    step_hours: float = 1.0
    n_paths: int = 2000
    seed: int = 0
    quantiles: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    es_conf: float = 0.975
    method: str = "auto"
    auto_proxy_above: float = 2.0e7
    warn_threshold: float = 0.05
    funding: bool = True
    call_levels: bool = True

    def __post_init__(self) -> None:
        h, s = self.horizon_hours, self.step_hours
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not math.isfinite(h) \
                or not 0.0 <= h <= MAX_HORIZON_HOURS:
            raise InputError("horizon_hours", f"must be in [0, {MAX_HORIZON_HOURS:g}], got {h!r}")
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) \
                or not s > 0.0:
            raise InputError("step_hours", f"must be positive, got {s!r}")
        n = h / s
        if abs(n - round(n)) > 1e-9:
            raise InputError("step_hours", f"horizon {h:g} h is not a whole number of "
                             f"{s:g} h steps")
        if round(n) > MAX_STEPS:
            raise InputError("step_hours", f"at most {MAX_STEPS} steps, got {round(n)}")
        if isinstance(self.n_paths, bool) or not isinstance(self.n_paths, int) \
                or not 1 <= self.n_paths <= 1_000_000:
            raise InputError("n_paths", f"must be an integer in [1, 1000000], got "
                             f"{self.n_paths!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError("seed", f"must be an integer >= 0, got {self.seed!r}")
        qs = tuple(float(q) for q in self.quantiles)
        if not qs or not all(0.0 < q < 1.0 for q in qs) or list(qs) != sorted(set(qs)):
            raise InputError("quantiles", "must be increasing, distinct, each in (0, 1)")
        object.__setattr__(self, "quantiles", qs)
        if not 0.5 <= float(self.es_conf) < 1.0:
            raise InputError("es_conf", f"must be in [0.5, 1), got {self.es_conf!r}")
        if self.method not in METHODS:
            raise InputError("method", f"must be one of {METHODS}, got {self.method!r}")
        if not 0.0 < float(self.warn_threshold) < 1.0:
            raise InputError("warn_threshold", f"must be in (0, 1), got {self.warn_threshold!r}")

    @property
    def n_steps(self) -> int:
        return int(round(self.horizon_hours / self.step_hours))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["quantiles"] = list(self.quantiles)
        return d

    @property
    def hash(self) -> str:
        return params_hash({"forecast": self.to_dict()})
