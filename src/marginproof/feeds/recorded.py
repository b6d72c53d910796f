"""Recorded venue messages built from the shipped data, in the venues' real JSON shapes.

These drive the local websocket server (:mod:`marginproof.feeds.server`) in tests and demos:

* Deribit: for one shipped option-chain date, a ``deribit_price_index.btc_usd`` notification,
  ``ticker.<option>.100ms`` notifications (``mark_price`` in BTC, ``mark_iv`` in percent,
  ``underlying_price``, ``index_price``) and a ``markprice.options.btc_usd`` list;
* Binance USD-M: ``bookTicker`` frames from the shipped 5.7-minute BTCUSDT best bid/ask sample,
  ``depthUpdate`` diffs derived from its best-level changes (sequence ids chained from the
  shipped depth snapshot's ``lastUpdateId``), and ``markPriceUpdate`` once a second (mark =
  mid, index = mid, funding = the shipped Binance funding rate in force).

Values are the shipped numbers; only envelopes and ids are synthesised.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from marginproof.io import datasets


def _dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def deribit_notification(channel: str, data: Any) -> str:
    """A Deribit JSON-RPC subscription notification frame."""
    return _dump({"jsonrpc": "2.0", "method": "subscription",
                  "params": {"channel": channel, "data": data}})


def deribit_messages(quote_date: str = "2022-04-15", max_options: int = 40
                     ) -> list[tuple[str, str]]:
    """``(channel, frame)`` pairs for one shipped chain, time-ordered.

    ``max_options`` live options nearest the money (by ``strike_distance_pct``) are included.
    """
    chain = datasets.option_chain(quote_date)
    ts_ms = int(chain["quote_unixtime"].iloc[0]) * 1000
    live = chain[chain["expiry_unix"] * 1000 > ts_ms].copy()
    live = live[np.isfinite(live["mark_iv"]) & (live["mark_iv"] > 0)]
    live = live.reindex(live["strike_distance_pct"].abs().sort_values().index).head(max_options)
    nearest = chain.loc[chain["expiry_unix"] > ts_ms / 1000].sort_values("expiry_unix")
    index = float(nearest["underlying_price"].iloc[0])
    out: list[tuple[str, str]] = []
    ch = "deribit_price_index.btc_usd"
    out.append((ch, deribit_notification(ch, {"index_name": "btc_usd", "price": index,
                                              "timestamp": ts_ms})))
    marks = []
    for k, row in enumerate(live.itertuples(index=False)):
        name = str(row.instrument_name)
        mark_btc = 0.5 * (float(row.bid_price) + float(row.ask_price))
        ch = f"ticker.{name}.100ms"
        data = {
            "timestamp": ts_ms + k + 1, "instrument_name": name, "state": "open",
            "mark_price": mark_btc, "mark_iv": float(row.mark_iv),
            "underlying_price": float(row.underlying_price),
            "underlying_index": str(row.underlying_index), "index_price": index,
            "best_bid_price": float(row.bid_price), "best_ask_price": float(row.ask_price),
            "bid_iv": 0.0, "ask_iv": 0.0, "interest_rate": 0.0,
            "open_interest": float(row.open_interest),
            "greeks": {"delta": float(row.delta), "gamma": float(row.gamma),
                       "vega": float(row.vega), "theta": float(row.theta),
                       "rho": float(row.rho)},
        }
        out.append((ch, deribit_notification(ch, data)))
        marks.append({"timestamp": ts_ms + len(live) + 1, "mark_price": mark_btc,
                      "iv": float(row.mark_iv) / 100.0, "instrument_name": name})
    ch = "markprice.options.btc_usd"
    out.append((ch, deribit_notification(ch, marks)))
    return out


def binance_messages(max_updates: int = 2000, symbol: str = "BTCUSDT"
                     ) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """``(stream, frame)`` pairs (raw payloads) and the depth snapshot that seeds the book.

    Streams: ``btcusdt@bookTicker``, ``btcusdt@depth``, ``btcusdt@markPrice``.
    """
    bt = datasets.load_bookticker().head(max_updates)
    depth = datasets.load_depth_snapshot()
    funding = datasets.load_funding("binance")
    funding = funding[funding["symbol"] == symbol]
    last_id = int(depth["last_update_id"].iloc[0])
    snap = {
        "lastUpdateId": last_id,
        "bids": [[str(p), str(q)] for p, q in depth.loc[depth["side"] == "bid",
                                                        ["price", "qty_btc"]].to_numpy(float)],
        "asks": [[str(p), str(q)] for p, q in depth.loc[depth["side"] == "ask",
                                                        ["price", "qty_btc"]].to_numpy(float)],
    }
    low = symbol.lower()
    out: list[tuple[str, str]] = []
    u = last_id
    prev_u = last_id
    prev_bid: tuple[float, float] | None = None
    prev_ask: tuple[float, float] | None = None
    next_mark_ms = int(bt["txn_time_ms"].iloc[0]) // 1000 * 1000 + 1000
    cols = [bt[c].to_numpy(float) for c in ("txn_time_ms", "bid_price", "bid_qty_btc",
                                            "ask_price", "ask_qty_btc")]
    for t_f, bp, bq, ap, aq in zip(*cols, strict=True):
        t = int(t_f)
        u += 1
        bid = (float(bp), float(bq))
        ask = (float(ap), float(aq))
        out.append((f"{low}@bookTicker", _dump({
            "e": "bookTicker", "u": u, "s": symbol, "b": str(bid[0]), "B": str(bid[1]),
            "a": str(ask[0]), "A": str(ask[1]), "T": t, "E": t + 1})))
        bids = [[str(bid[0]), str(bid[1])]]
        asks = [[str(ask[0]), str(ask[1])]]
        if prev_bid is not None and prev_bid[0] > bid[0]:
            bids.append([str(prev_bid[0]), "0"])  # the old best level is gone
        if prev_ask is not None and prev_ask[0] < ask[0]:
            asks.append([str(prev_ask[0]), "0"])
        out.append((f"{low}@depth", _dump({
            "e": "depthUpdate", "E": t + 1, "T": t, "s": symbol, "U": u, "u": u,
            "pu": prev_u, "b": bids, "a": asks})))
        prev_u = u
        prev_bid, prev_ask = bid, ask
        if t >= next_mark_ms:
            mid = 0.5 * (bid[0] + ask[0])
            ts = pd.Timestamp(next_mark_ms, unit="ms", tz="UTC")
            past = funding[funding["funding_time_utc"] <= ts]
            rate = float(past["funding_rate"].iloc[-1]) if len(past) else 0.0
            out.append((f"{low}@markPrice", _dump({
                "e": "markPriceUpdate", "E": next_mark_ms, "s": symbol, "p": f"{mid:.2f}",
                "i": f"{mid:.2f}", "P": f"{mid:.2f}", "r": f"{rate:.8f}",
                "T": (next_mark_ms // 28_800_000 + 1) * 28_800_000})))
            next_mark_ms += 1000
    return out, snap
