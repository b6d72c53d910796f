"""Shared sample markets for the preset unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from marginproof.market.snapshot import MarketSnapshot

T0 = datetime(2026, 2, 20, 8, 0, tzinfo=UTC)
EXP = datetime(2026, 3, 27, 8, 0, tzinfo=UTC)  # 27MAR26
EXP_NAME = "27MAR26"


@pytest.fixture
def deribit_market() -> MarketSnapshot:
    return MarketSnapshot(
        T0, {"BTC": 98_000.0, "ETH": 3_350.0, "SOL": 180.0},
        forwards={"BTC": {EXP: 98_400.0}, "ETH": {EXP: 3_362.5}},
        mark_prices={"BTC-PERPETUAL": 98_050.0, f"BTC-{EXP_NAME}": 98_400.0,
                     "ETH-PERPETUAL": 3_351.0, "BTC_USDC-PERPETUAL": 98_020.0,
                     "SOL_USDC-PERPETUAL": 180.2, f"BTC-{EXP_NAME}-110000-C": 0.012},
        implied_vols={f"BTC-{EXP_NAME}-110000-C": 0.52, f"BTC-{EXP_NAME}-90000-P": 0.58,
                      f"ETH-{EXP_NAME}-3000-P": 0.7, f"BTC_USDC-{EXP_NAME}-100000-C": 0.5})


@pytest.fixture
def derive_market() -> MarketSnapshot:
    return MarketSnapshot(
        T0, {"ETH": 3_350.0, "BTC": 98_000.0, "USDT": 0.9998},
        forwards={"ETH": {EXP: 3_362.5}, "BTC": {EXP: 98_400.0}},
        mark_prices={"ETH_USDC-PERPETUAL": 3_351.2, "BTC_USDC-PERPETUAL": 98_010.0},
        implied_vols={f"ETH_USDC-{EXP_NAME}-4000-C": 0.68, f"ETH_USDC-{EXP_NAME}-3000-P": 0.74,
                      f"BTC_USDC-{EXP_NAME}-90000-P": 0.55},
        rates={"ETH": 0.04})


def seconds(d: timedelta) -> float:
    return d.total_seconds()
