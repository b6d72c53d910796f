"""Implied-volatility surfaces: raw SVI smiles, SSVI surfaces, chain fitting and checks."""

from marginproof.surfaces.chain import ChainFit, chain_smiles, fit_chain, fitted_vs_market
from marginproof.surfaces.ssvi import SSVISurface, fit_ssvi, ssvi_checks, ssvi_total_variance
from marginproof.surfaces.svi import (
    VOGT_PARAMS,
    SVIFit,
    SVIParams,
    fit_svi,
    svi_butterfly_free,
    svi_g,
    svi_total_variance,
)

__all__ = [
    "VOGT_PARAMS",
    "ChainFit",
    "SSVISurface",
    "SVIFit",
    "SVIParams",
    "chain_smiles",
    "fit_chain",
    "fit_ssvi",
    "fit_svi",
    "fitted_vs_market",
    "ssvi_checks",
    "ssvi_total_variance",
    "svi_butterfly_free",
    "svi_g",
    "svi_total_variance",
]
