"""Fit SVI per expiry and SSVI across expiries to one Deribit option chain (a DataFrame).

Quote selection (``risk-methods.md`` section 6): per expiry, OTM quotes only (puts ``K < F``,
calls ``K >= F``), ``F`` = median ``underlying_price`` of that expiry's rows, ``|k| <= 0.7``,
``sigma = mark_iv / 100``, ``T = (expiry_unix - quote_unixtime) / (365 * 86400)``. Expiries with
fewer than 5 quotes are skipped (and listed). The chain is passed in; nothing is read here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from marginproof.errors import InputError
from marginproof.surfaces.ssvi import SSVISurface, fit_ssvi
from marginproof.surfaces.svi import SVIFit, fit_svi

FloatArray = NDArray[np.float64]
SECONDS_PER_YEAR = 365.0 * 86400.0
MAX_ABS_K = 0.7
MIN_POINTS = 5
_COLUMNS = ("quote_date", "expiry_unix", "quote_unixtime", "underlying_price", "strike",
            "option_right", "mark_iv")


@dataclass(frozen=True)
class Smile:
    """Selected quotes of one expiry."""

    expiry_unix: int
    t_years: float
    forward: float
    strike: FloatArray
    k: FloatArray
    vol: FloatArray
    is_call: NDArray[np.bool_]


def chain_smiles(chain: pd.DataFrame, max_abs_k: float = MAX_ABS_K, min_points: int = MIN_POINTS
                 ) -> tuple[list[Smile], list[int]]:
    """OTM smiles of every expiry of one chain, and the expiries skipped for lack of quotes."""
    missing = [c for c in _COLUMNS if c not in chain.columns]
    if missing:
        raise InputError("chain", f"missing columns {missing}")
    if chain.empty:
        raise InputError("chain", "empty option chain")
    if chain["quote_date"].astype(str).nunique() != 1:
        raise InputError("chain", "one quote_date per chain")
    smiles: list[Smile] = []
    skipped: list[int] = []
    for exp in sorted(int(e) for e in chain["expiry_unix"].unique()):
        g = chain[chain["expiry_unix"] == exp]
        t = (float(exp) - float(g["quote_unixtime"].iloc[0])) / SECONDS_PER_YEAR
        f = float(g["underlying_price"].median())
        k_all = g["strike"].to_numpy(dtype=float)
        call = g["option_right"].astype(str).str.lower().str.startswith("c").to_numpy()
        iv = g["mark_iv"].to_numpy(dtype=float) / 100.0
        otm = np.where(call, k_all >= f, k_all < f)
        k = np.log(k_all / f)
        sel = otm & (np.abs(k) <= max_abs_k) & (iv > 0.0) & np.isfinite(iv)
        if t <= 0.0 or int(sel.sum()) < min_points:
            skipped.append(exp)
            continue
        order = np.argsort(k[sel], kind="stable")
        smiles.append(Smile(exp, t, f, k_all[sel][order], k[sel][order], iv[sel][order],
                            call[sel][order]))
    return smiles, skipped


@dataclass(frozen=True)
class ChainFit:
    """SVI slices and the SSVI surface of one chain."""

    quote_date: str
    smiles: tuple[Smile, ...]
    svi: tuple[SVIFit, ...]
    ssvi: SSVISurface
    skipped_expiries: tuple[int, ...]

    def quality(self) -> pd.DataFrame:
        """One row per expiry: points, RMSE (vol points), ATM vol, g-check for SVI and SSVI."""
        rows = []
        for j, (s, f) in enumerate(zip(self.smiles, self.svi, strict=True)):
            rows.append({
                "quote_date": self.quote_date, "expiry_unix": s.expiry_unix,
                "t_years": s.t_years, "forward": s.forward, "n_points": f.n_points,
                "svi_rmse_vol_points": f.rmse_vol_points, "svi_atm_vol": f.atm_vol,
                "svi_g_min": f.g_min, "svi_butterfly_free": f.butterfly_free,
                "ssvi_rmse_vol_points": float(self.ssvi.rmse_vol_points_by_expiry[j]),
                "ssvi_atm_vol": float(np.sqrt(self.ssvi.thetas[j] / s.t_years)),
            })
        return pd.DataFrame(rows)


def fit_chain(chain: pd.DataFrame, enforce_ssvi: bool = True) -> ChainFit:
    """SVI per expiry (several starts) and a joint SSVI surface for one chain."""
    smiles, skipped = chain_smiles(chain)
    if not smiles:
        raise InputError("chain", "no expiry has enough OTM quotes to fit")
    svi = tuple(fit_svi(s.k, s.vol, s.t_years) for s in smiles)
    theta0 = [max(float(f.params.a + f.params.b * (f.params.rho * -f.params.m
                                                    + np.hypot(f.params.m, f.params.sigma))),
                  1e-6) for f in svi]
    surf = fit_ssvi([s.k for s in smiles], [s.vol for s in smiles],
                    [s.t_years for s in smiles], theta0, enforce_ssvi)
    return ChainFit(str(chain["quote_date"].iloc[0]), tuple(smiles), svi, surf, tuple(skipped))


def fitted_vs_market(fit: ChainFit) -> pd.DataFrame:
    """Every fitted quote with its market and fitted vols (data for the smile plots).

    Columns: ``quote_date, expiry_unix, t_years, forward, strike, k, option_right, market_iv,
    svi_iv, ssvi_iv`` (vols decimal).
    """
    frames = []
    for s, f in zip(fit.smiles, fit.svi, strict=True):
        frames.append(pd.DataFrame({
            "quote_date": fit.quote_date, "expiry_unix": s.expiry_unix, "t_years": s.t_years,
            "forward": s.forward, "strike": s.strike, "k": s.k,
            "option_right": np.where(s.is_call, "call", "put"), "market_iv": s.vol,
            "svi_iv": f.implied_vol(s.k), "ssvi_iv": fit.ssvi.implied_vol(s.k, s.t_years),
        }))
    return pd.concat(frames, ignore_index=True)


def fitted_curves(fit: ChainFit, n: int = 101) -> pd.DataFrame:
    """Smooth fitted smiles on a ``k`` grid per expiry (for plotting lines under the points)."""
    frames = []
    for s, f in zip(fit.smiles, fit.svi, strict=True):
        k = np.linspace(float(s.k.min()), float(s.k.max()), n)
        frames.append(pd.DataFrame({"quote_date": fit.quote_date, "expiry_unix": s.expiry_unix,
                                    "t_years": s.t_years, "k": k,
                                    "svi_iv": f.implied_vol(k),
                                    "ssvi_iv": fit.ssvi.implied_vol(k, s.t_years)}))
    return pd.concat(frames, ignore_index=True)
