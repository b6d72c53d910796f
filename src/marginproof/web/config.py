"""Console settings: where reports and proofs live (``MARGINPROOF_*`` environment variables).

Read separately from :class:`marginproof.config.settings.Settings` (which ignores unknown
variables), so the console needs no change to the service's settings.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebSettings(BaseSettings):
    """Console settings.

    Attributes
    ----------
    reports_dir : str
        Directory of backtest and stress reports (files or one folder per report).
    proofs_dir : str or None
        Proofs directory of ``marginproof prove --out DIR``; None hides the proofs page.
    overview_limit : int
        Most accounts the dashboard ranking returns.
    stream_flush_s : float
        The console stream coalesces updates over this interval (one message per account).
    """

    model_config = SettingsConfigDict(env_prefix="MARGINPROOF_", extra="ignore")

    reports_dir: str = "reports"
    proofs_dir: str | None = None
    overview_limit: int = Field(default=500, ge=1, le=100_000)
    stream_flush_s: float = Field(default=0.25, gt=0, le=10)
