"""Concentration add-on: margin scaled up for positions large against market volume.

``add_on = base_margin * slope * max(0, size_ratio - threshold)`` with ``size_ratio =
|net coins| / (ADV h)`` (or ``|q| / open interest`` when OI is given). The threshold and slope
are policy parameters (configs), not estimated from data: a book that is ``threshold + 10 %`` of
the volume it must be unwound into over the MPOR pays ``slope * 10 %`` more margin.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from marginproof.errors import InputError

FloatArray = NDArray[np.float64]


def size_ratio(quantity: ArrayLike, adv: ArrayLike, horizon_days: float = 1.0) -> FloatArray:
    """``|q| / (ADV h)``, broadcast."""
    v = np.asarray(adv, dtype=np.float64)
    if np.any(v <= 0.0) or not horizon_days > 0.0:
        raise InputError("adv", "ADV and horizon must be positive")
    return np.asarray(np.abs(np.asarray(quantity, float)) / (v * float(horizon_days)))


def concentration_addon(base_margin: ArrayLike, ratio: ArrayLike, threshold: float = 0.01,
                        slope: float = 1.0) -> FloatArray:
    """``base_margin * slope * max(0, ratio - threshold)``, broadcast (USD)."""
    if threshold < 0.0 or slope < 0.0:
        raise InputError("concentration", "threshold and slope must be >= 0")
    b = np.asarray(base_margin, dtype=np.float64)
    r = np.asarray(ratio, dtype=np.float64)
    return np.asarray(b * slope * np.maximum(0.0, r - threshold), dtype=np.float64)
