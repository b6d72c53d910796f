"""Service settings: one typed ``BaseSettings`` read from ``MARGINPROOF_*`` environment variables.

Embedded defaults need no server: a SQLite file and the in-process bus. Production sets
``MARGINPROOF_DATABASE_URL=postgresql://...`` and ``MARGINPROOF_BUS_URL=nats://...``.
Nothing is read at import: build ``Settings()`` where it is needed (the CLI, tests).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class FeedSpec(BaseModel):
    """One market-data feed the service runs.

    ``kind``: ``deribit`` or ``binance`` (websocket clients) or ``replay`` (shipped history).
    ``channels``: Deribit channels (``ticker.BTC-PERPETUAL.100ms``, ``deribit_price_index.btc_usd``,
    ``markprice.options.btc_usd``) or Binance streams (``btcusdt@bookTicker``,
    ``btcusdt@markPrice``, ``btcusdt@depth``). ``speed``: replay speed-up (0 = as fast as possible).
    """

    kind: Literal["deribit", "binance", "replay"]
    url: str = ""
    channels: list[str] = Field(default_factory=list)
    name: str = ""
    speed: float = 0.0
    replay_date: str = "2022-04-15"
    replay_symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])

    @model_validator(mode="after")
    def _check(self) -> FeedSpec:
        if self.kind != "replay" and not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"{self.kind} feed needs a ws:// or wss:// url")
        if self.speed < 0:
            raise ValueError("speed must be >= 0")
        return self


class Settings(BaseSettings):
    """All runtime settings (see ``docs/service.md``)."""

    model_config = SettingsConfigDict(env_prefix="MARGINPROOF_", extra="ignore")

    database_url: str = "sqlite:///marginproof.sqlite"
    bus_url: str = "inprocess"
    bus_stream: str = "MARGINPROOF"
    bus_prefix: str = "mp"
    bus_ack_wait_s: float = 30.0

    partitions: int = Field(default=1, ge=1, le=1024)
    run_partitions: list[int] | None = None
    engine_model: str = "dynamic"
    """Model in force at start (any registered model); changed later only by an announced
    ``params`` change with ``engine_model`` set (the governance of ``PUT /parameters``)."""
    engine_params_file: str | None = None
    engine_commit_every: int = Field(default=256, ge=1)
    engine_snapshot_every: int = Field(default=100_000, ge=0)
    """Store an engine snapshot every N log entries (0: never); restart replays only the
    entries after the newest valid one."""
    engine_snapshot_keep: int = Field(default=2, ge=1)
    engine_snapshot_replay_s: float = Field(default=1.0, ge=0)
    """Also snapshot once the engine spent this long on entries since the last snapshot (0:
    off): bounds the tail a restart replays in time, whatever an entry costs."""

    max_tick_delay_ms: int = Field(default=5_000, ge=0)
    max_jump: float = Field(default=0.15, gt=0)
    stale_after_s: float = Field(default=30.0, gt=0)

    params_min_notice_s: float = Field(default=3600.0, ge=0)
    settlement_hour_utc: int = Field(default=8, ge=0, le=23)
    backtest_window_days: int = Field(default=250, ge=2, le=5000)
    backtest_alpha: float = Field(default=0.01, gt=0, lt=1)
    proposal_min_days: int = Field(default=20, ge=1)
    proposal_notice_s: float = Field(default=86_400.0, ge=0)
    auto_approve_proposals: bool = False
    feeds: list[FeedSpec] = Field(default_factory=list)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    # isolation of callers (docs/service.md, "Isolation"): body size checked before anything
    # is read, a token bucket per key, heavy requests in worker processes with a quota per lane
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    rate_limit_per_s: float = Field(default=200.0, gt=0)
    rate_limit_burst: float = Field(default=400.0, ge=1)
    work_processes: int = Field(default=2, ge=1, le=64)
    work_mode: Literal["process", "thread"] = "process"
    # start the worker processes at service start and build the model in force in each
    # (off: they start on the first heavy request, which then pays imports and model build)
    work_warm_up: bool = True
    whatif_concurrency: int = Field(default=2, ge=1, le=256)
    whatif_queue: int = Field(default=32, ge=0, le=10_000)
    whatif_timeout_s: float = Field(default=30.0, gt=0)
    stall_after_s: float = Field(default=15.0, gt=0)
    ws_recheck_s: float = Field(default=5.0, gt=0)

    @field_validator("bus_url")
    @classmethod
    def _bus(cls, v: str) -> str:
        if v != "inprocess" and not v.startswith(("nats://", "tls://")):
            raise ValueError("bus_url must be 'inprocess' or a nats:// URL")
        return v

    @field_validator("bus_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "_-" for c in v):
            raise ValueError("bus_prefix must be a single subject token")
        return v

    @model_validator(mode="after")
    def _partitions(self) -> Settings:
        for p in self.run_partitions or []:
            if not 0 <= p < self.partitions:
                raise ValueError(f"run_partitions: {p} not in [0, {self.partitions})")
        return self

    def owned_partitions(self) -> list[int]:
        """Partitions this process runs (all by default)."""
        return list(self.run_partitions) if self.run_partitions is not None else \
            list(range(self.partitions))

    def public(self) -> dict[str, Any]:
        """Settings safe to show (database credentials removed)."""
        d = self.model_dump()
        for k in ("database_url", "bus_url"):
            u = str(d[k])
            if "@" in u:
                scheme, rest = u.split("://", 1)
                d[k] = f"{scheme}://***@{rest.split('@', 1)[1]}"
        return d
