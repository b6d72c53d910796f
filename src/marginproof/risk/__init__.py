"""Volatility and correlation dynamics: EWMA (RiskMetrics), GARCH(1,1)-t, implied-vol changes.

Entry points: :func:`marginproof.risk.ewma.ewma_sigma`,
:func:`marginproof.risk.ewma.ewma_correlation`, :func:`marginproof.risk.garch.fit_garch_t`,
:class:`marginproof.risk.history.MarketHistory`.
"""
