"""Shell side of the hedge search: configuration, quote files and the shipped order books.

* ``configs/hedge.toml`` (:func:`load_config`): fees and lots per venue, the quote model;
* a quotes file (:func:`load_quotes`), JSON::

      {"quotes": {"BTC-PERPETUAL": {"bid": 40230.5, "ask": 40231.0,
                                    "bid_size": 2000000, "ask_size": 1500000},
                  "BTC-24JUN22-40000-C": {"bids": [[0.079, 12.5], [0.0785, 30]],
                                          "asks": [[0.0805, 10.0]]}}}

  prices in venue units (USD per coin; coin for coin-settled options), sizes in position units
  (coins; USD face for inverse futures and perpetuals);
* the shipped Deribit option chains (bid/ask/sizes of every listed BTC option, used when the
  market time is within ``chain_max_age_s`` of a chain snapshot) and the shipped Binance BTCUSDT
  perpetual book, whose shape models perpetual and futures depth.

:func:`candidate_set` composes them into the core's :class:`~marginproof.hedge.CandidateSet`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from marginproof.config.params import config_dir, load_toml
from marginproof.errors import InputError
from marginproof.hedge.candidates import (
    CandidateSet,
    DepthProfile,
    QuoteModel,
    build_candidates,
    default_candidate_names,
)
from marginproof.hedge.quotes import FeeSchedule, Level, LotSizes, Quote
from marginproof.hedge.surrogates import accepts
from marginproof.instruments.contracts import Instrument
from marginproof.instruments.portfolio import Portfolio
from marginproof.io.formats import read_json
from marginproof.market.snapshot import MarketSnapshot
from marginproof.models.base import MarginModel


@dataclass(frozen=True)
class HedgeConfig:
    """Parsed ``configs/hedge.toml``."""

    fees: Mapping[str, FeeSchedule]
    lots: Mapping[str, LotSizes]
    quote_model: QuoteModel
    defaults: Mapping[str, Any]

    def venue_for(self, model_name: str) -> str:
        return "derive" if model_name.startswith("derive") else "deribit"


def _num(tab: Mapping[str, Any], key: str, path: str, lo: float, hi: float) -> float:
    v = tab.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= float(v) <= hi:
        raise InputError(f"hedge.{path}.{key}", f"must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


@lru_cache(maxsize=4)
def shipped_depth_profile(levels_bps: tuple[float, ...]) -> DepthProfile:
    """The shipped Binance BTCUSDT perp book aggregated into levels (both sides averaged).

    Level ``i`` holds the USD notional resting between ``levels_bps[i-1]`` and ``levels_bps[i]``
    basis points from mid, priced at its notional-weighted mean distance.
    """
    from marginproof.io.datasets import load_depth_snapshot

    book = load_depth_snapshot()
    bids = book[book["side"] == "bid"]
    asks = book[book["side"] == "ask"]
    mid = 0.5 * (float(bids["price"].max()) + float(asks["price"].min()))
    edges = np.concatenate([[0.0], np.asarray(levels_bps, float)]) / 1e4
    offs, notion = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        tot, wsum = 0.0, 0.0
        for side in (bids, asks):
            d = np.abs(side["price"].to_numpy(float) / mid - 1.0)
            sel = (d > lo) & (d <= hi) if lo > 0 else (d <= hi)
            usd = side["qty_btc"].to_numpy(float)[sel] * side["price"].to_numpy(float)[sel]
            tot += float(usd.sum()) / 2.0
            wsum += float((usd * d[sel]).sum()) / 2.0
        if tot > 0.0:
            offs.append(wsum / tot)
            notion.append(tot)
    return DepthProfile(np.array(offs), np.array(notion),
                        "Binance BTCUSDT perp book 2024-08-08 23:54 UTC (shipped), "
                        f"{len(offs)} levels to {levels_bps[-1]:g} bp")


def load_config(path: str | Path | None = None) -> HedgeConfig:
    """Read and validate the hedge configuration (``configs/hedge.toml`` by default)."""
    raw = load_toml(path or config_dir() / "hedge.toml")
    venues = raw.get("venues")
    if not isinstance(venues, Mapping) or not venues:
        raise InputError("hedge.venues", "missing [venues.<name>] tables")
    fees: dict[str, FeeSchedule] = {}
    lots: dict[str, LotSizes] = {}
    for name, tab in venues.items():
        if not isinstance(tab, Mapping) or not isinstance(tab.get("fees"), Mapping):
            raise InputError(f"hedge.venues.{name}.fees", "missing table")
        fees[name] = FeeSchedule.from_mapping(name, tab["fees"])
        lt = tab.get("lots", {})
        for k, v in lt.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v < 1e6:
                raise InputError(f"hedge.venues.{name}.lots.{k}", "must be a positive number")
        lots[name] = LotSizes({str(k): float(v) for k, v in lt.items()})
    qm = raw.get("quote_model", {})
    levels = qm.get("profile_levels_bps", [0.5, 1.0, 2.0, 5.0, 10.0, 25.0])
    if (not isinstance(levels, list) or not levels or any(
            not isinstance(v, (int, float)) or v <= 0 for v in levels)
            or list(levels) != sorted(levels)):
        raise InputError("hedge.quote_model.profile_levels_bps",
                         "must be an ascending list of positive numbers")

    def scale_table(key: str) -> dict[str, float]:
        tab = qm.get(key, {})
        if not isinstance(tab, Mapping):
            raise InputError(f"hedge.quote_model.{key}", "must be a table")
        out = {}
        for k, v in tab.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise InputError(f"hedge.quote_model.{key}.{k}", "must be a number >= 0")
            out[str(k)] = float(v)
        return out

    model = QuoteModel(
        delta_one=shipped_depth_profile(tuple(float(v) for v in levels)),
        depth_scale=scale_table("depth_scale"),
        future_depth_scale=_num(qm, "future_depth_scale", "quote_model", 0.0, 10.0),
        option_half_spread_vol_points=_num(qm, "option_half_spread_vol_points", "quote_model",
                                           0.0, 100.0),
        option_min_half_spread_rel=_num(qm, "option_min_half_spread_rel", "quote_model", 0.0,
                                        0.1),
        option_size_coins=scale_table("option_size_coins"))
    d = dict(raw.get("defaults", {}))
    _num(d, "max_options", "defaults", 0, 1000)
    _num(d, "max_depth_fraction", "defaults", 1e-6, 1.0)
    _num(d, "time_limit_s", "defaults", 0.1, 600.0)
    _num(d, "polish_evals", "defaults", 0, 1000)
    _num(d, "mm_rounds", "defaults", 0, 20)
    _num(d, "chain_max_age_s", "defaults", 0, 10 * 86400)
    return HedgeConfig(fees, lots, model, d)


# -- quotes files ---------------------------------------------------------------------------------
class _QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bid: float | None = None
    ask: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    bids: list[tuple[float, float]] | None = None
    asks: list[tuple[float, float]] | None = None

    @field_validator("bid", "ask", "bid_size", "ask_size")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not (math.isfinite(v) and v > 0.0):
            raise ValueError("must be a positive finite number")
        return v


class _QuotesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timestamp: datetime | None = None
    quotes: dict[str, _QuoteIn] = Field(max_length=5000)


def quotes_from_dict(data: Any, source: str = "quotes") -> dict[str, Quote]:
    """Validate a quotes document (see module docstring) into :class:`Quote` objects."""
    try:
        doc = _QuotesIn.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InputError(loc or "quotes", err["msg"]) from None
    out: dict[str, Quote] = {}
    for name, q in doc.quotes.items():
        out[name] = Quote(name, _side(name, q.bids, q.bid, q.bid_size, "bid"),
                          _side(name, q.asks, q.ask, q.ask_size, "ask"), source)
    return out


def _side(name: str, levels: list[tuple[float, float]] | None, px: float | None,
          size: float | None, key: str) -> tuple[Level, ...]:
    if levels is not None:
        if px is not None:
            raise InputError(f"quotes.{name}.{key}", f"give {key}s or {key}, not both")
        return tuple(Level(float(p), float(s)) for p, s in levels)
    if px is None:
        return ()
    if size is None:
        raise InputError(f"quotes.{name}.{key}_size", f"missing: the size at the {key}")
    return (Level(px, size),)


def load_quotes(path: str | Path) -> dict[str, Quote]:
    """Read a quotes JSON file."""
    return quotes_from_dict(read_json(path), Path(path).name)


@lru_cache(maxsize=1)
def _chains() -> Any:
    from marginproof.io.datasets import load_option_chains

    return load_option_chains()


def chain_quotes(market: MarketSnapshot, max_age_s: float) -> dict[str, Quote]:
    """Quotes of the shipped Deribit BTC chain closest to the market time (within
    ``max_age_s``): best bid/ask in BTC with their sizes (BTC); empty if none is close."""
    try:
        df = _chains()
    except InputError:
        return {}
    ts = market.timestamp.timestamp()
    times = np.unique(df["quote_unixtime"].to_numpy(np.int64))
    if times.size == 0:
        return {}
    j = int(np.argmin(np.abs(times - ts)))
    if abs(float(times[j]) - ts) > max_age_s:
        return {}
    sub = df[df["quote_unixtime"] == times[j]]
    stamp = datetime.fromtimestamp(int(times[j]), tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    out: dict[str, Quote] = {}
    cols = [sub[c].to_numpy() for c in ("instrument_name", "bid_price", "bid_size",
                                        "ask_price", "ask_size")]
    for name, bp, bs, ap, as_ in zip(*cols, strict=True):
        bids = (Level(float(bp), float(bs)),) if (np.isfinite(bp) and bp > 0 and
                                                  np.isfinite(bs) and bs > 0) else ()
        asks = (Level(float(ap), float(as_)),) if (np.isfinite(ap) and ap > 0 and
                                                   np.isfinite(as_) and as_ > 0) else ()
        if bids and asks and bids[0].price > asks[0].price:
            continue
        if bids or asks:
            out[str(name)] = Quote(str(name), bids, asks, f"Deribit chain {stamp} (shipped)")
    return out


def candidate_set(model: MarginModel, portfolio: Portfolio, market: MarketSnapshot,
                  config: HedgeConfig | None = None, quotes: Mapping[str, Quote] | None = None,
                  names: Sequence[str] | None = None, venue: str | None = None,
                  max_options: int | None = None, use_shipped: bool = True,
                  modelled: bool = True) -> CandidateSet:
    """Candidates of ``portfolio`` for ``model``: names (default: perps, futures, options on its
    underlyings), each quoted from ``quotes``, else the shipped books, else the quote model."""
    cfg = config or load_config()
    v = venue or cfg.venue_for(model.name)
    if v not in cfg.fees:
        raise InputError("venue", f"unknown venue {v!r}; configured: {', '.join(cfg.fees)}")
    d = cfg.defaults
    if names is None:
        derive = model.name.startswith("derive")
        names = default_candidate_names(
            portfolio, market, int(max_options if max_options is not None
                                   else d.get("max_options", 60)),
            include_inverse=not derive)
    known: dict[str, Quote] = {}
    if use_shipped:
        known.update(chain_quotes(market, float(d.get("chain_max_age_s", 7200))))
    if quotes:
        known.update(quotes)

    def lookup(inst: Instrument) -> Quote | None:
        return known.get(inst.name)

    return build_candidates(names, market, cfg.fees[v], cfg.lots.get(v, LotSizes({})), lookup,
                            cfg.quote_model if modelled else None,
                            float(d.get("max_depth_fraction", 1.0)),
                            accepts(model, portfolio, market))


def account_equity(model: MarginModel, portfolio: Portfolio, collateral: Mapping[str, float],
                   market: MarketSnapshot, haircuts: Mapping[str, float] | None = None
                   ) -> float:
    """The account's equity in USD as the margin is compared with it: Derive's own
    ``MtM + cash`` for the Derive presets, else collateral after haircuts
    (``configs/collateral.toml`` unless ``haircuts``) plus spot and option marks."""
    from marginproof.hedge.optimize import equity_of

    if model.name.startswith("derive"):
        r = model.margin(portfolio, market)
        if "equity" in r.details:
            return float(r.details["equity"])
    if haircuts is None:
        tab = load_toml(config_dir() / "collateral.toml")
        haircuts = {str(k): float(v) for k, v in tab["haircuts"].items()}
    return equity_of(portfolio, dict(collateral), market, dict(haircuts))


def parse_target(text: str | None) -> Any:
    """``equity``, ``excess=5000`` or ``im=20000`` (USD) -> :class:`Target` (None for none)."""
    from marginproof.hedge.optimize import Target

    if text is None or not text.strip():
        return None
    kind, _, value = text.strip().partition("=")
    kind = kind.strip().lower()
    if kind == "equity" and not value:
        return Target("equity")
    if kind in ("excess", "im") and value:
        try:
            return Target(kind, float(value))
        except ValueError:
            raise InputError("target", f"{value!r} is not a number") from None
    raise InputError("target", f"expected 'equity', 'excess=<USD>' or 'im=<USD>', got {text!r}")


def run_hedge(model: MarginModel, portfolio: Portfolio, collateral: Mapping[str, float],
              market: MarketSnapshot, *, target: Any = None, max_instruments: int | None = None,
              quotes: Mapping[str, Quote] | None = None, names: Sequence[str] | None = None,
              max_options: int | None = None, venue: str | None = None,
              time_limit_s: float | None = None, config: HedgeConfig | None = None,
              haircuts: Mapping[str, float] | None = None, equity_usd: float | None = None
              ) -> Any:
    """The hedge of an account end to end (the CLI and the service call this): candidates,
    equity (for equity and excess targets), search, verification."""
    from marginproof.hedge.optimize import suggest_hedge

    cfg = config or load_config()
    cands = candidate_set(model, portfolio, market, cfg, quotes, names, venue, max_options)
    equity = equity_usd
    if equity is None and target is not None and target.kind != "im":
        equity = account_equity(model, portfolio, collateral, market, haircuts)
    d = cfg.defaults
    return suggest_hedge(model, portfolio, market, cands,
                         "target" if target is not None else "im_plus_cost", target,
                         max_instruments, equity,
                         float(time_limit_s if time_limit_s is not None
                               else d.get("time_limit_s", 5.0)),
                         int(d.get("mm_rounds", 3)), int(d.get("polish_evals", 24)))
