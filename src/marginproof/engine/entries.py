"""Input-log entries: the only inputs of the engine.

Everything that can change a margin is an entry of the append-only input log, numbered by
``seq`` and stamped with the log's own append time ``logged_at_ms`` (never the engine's clock),
so replaying the same entries always gives the same margins.

Bodies (JSON objects):

* ``tick``: :meth:`Tick.to_dict`;
* ``market``: a full snapshot (``marginproof.io.formats.market_to_dict``) seeding/replacing the
  data of every underlying it prices;
* ``feed_status``: ``{stream, underlying, status: "stale"|"bad", reason}`` from the shell's feed
  watchdog or a parser rejection;
* ``account``: ``{account_id, positions: {instrument: qty}, collateral: {asset: amount}}``
  (absolute, replaces the account);
* ``fill``: ``{account_id, instrument, quantity}`` (signed delta);
* ``transfer``: ``{account_id, asset, amount}`` (signed delta);
* ``params``: ``{model, params, params_hash, effective_at_ms, changed_by}``; with
  ``engine_model: true`` the model becomes the engine's model in force at ``effective_at_ms``
  (otherwise only a change of the model in force's parameters concerns the engine);
* ``depth``: ``{underlying, exchange_ms, bids: [[price, qty], ...], asks: [...]}`` (best
  first) from a depth feed (:func:`marginproof.risk.live.parse_depth`);
* ``recalibrate``: ``{reason, changed_by}``: draw the scenario sets again (Monte Carlo seed
  derived from this entry) and rebuild every set and account.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from marginproof.errors import InputError
from marginproof.instruments.names import parse_instrument


class EntryKind(StrEnum):
    """Kinds of input-log entries."""

    TICK = "tick"
    MARKET = "market"
    FEED_STATUS = "feed_status"
    ACCOUNT = "account"
    FILL = "fill"
    TRANSFER = "transfer"
    PARAMS = "params"
    DEPTH = "depth"
    RECALIBRATE = "recalibrate"


ACCOUNT_KINDS = frozenset({EntryKind.ACCOUNT, EntryKind.FILL, EntryKind.TRANSFER})


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One input-log record.

    Attributes
    ----------
    seq : int
        Position in the log, 1-based, gap-free.
    kind : EntryKind
    logged_at_ms : int
        Append time (ms since epoch) recorded by the log, part of the input.
    source : str
        Who appended it (feed name, API key id, ``operator:<name>``).
    body : Mapping[str, Any]
    """

    seq: int
    kind: EntryKind
    logged_at_ms: int
    source: str
    body: Mapping[str, Any]

    @property
    def account_id(self) -> str | None:
        """The account an account-kind entry is about (None for market entries)."""
        if self.kind in ACCOUNT_KINDS:
            a = self.body.get("account_id")
            return a if isinstance(a, str) else None
        return None


def _finite(v: Any, field: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(field, f"must be a number, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise InputError(field, f"must be finite, got {v!r}")
    return f


def _account_id(body: Mapping[str, Any]) -> str:
    a = body.get("account_id")
    if not isinstance(a, str) or not a or len(a) > 128:
        raise InputError("account_id", "must be a non-empty string (at most 128 characters)")
    return a


def parse_account(body: Mapping[str, Any]) -> tuple[str, dict[str, float], dict[str, float]]:
    """``(account_id, positions, collateral)`` of an ``account`` body."""
    acc = _account_id(body)
    pos_raw = body.get("positions", {})
    col_raw = body.get("collateral", {})
    if not isinstance(pos_raw, Mapping) or not isinstance(col_raw, Mapping):
        raise InputError("account", "positions and collateral must be objects")
    positions: dict[str, float] = {}
    for name, q in pos_raw.items():
        parse_instrument(str(name), f"positions.{name}")
        positions[str(name)] = _finite(q, f"positions.{name}")
    collateral = {str(a): _finite(v, f"collateral.{a}") for a, v in col_raw.items()}
    return acc, positions, collateral


def parse_fill(body: Mapping[str, Any]) -> tuple[str, str, float]:
    """``(account_id, instrument, quantity delta)`` of a ``fill`` body."""
    acc = _account_id(body)
    name = body.get("instrument")
    if not isinstance(name, str):
        raise InputError("instrument", "must be a string")
    parse_instrument(name, "instrument")
    return acc, name, _finite(body.get("quantity"), "quantity")


def parse_transfer(body: Mapping[str, Any]) -> tuple[str, str, float]:
    """``(account_id, asset, amount delta)`` of a ``transfer`` body."""
    acc = _account_id(body)
    asset = body.get("asset")
    if not isinstance(asset, str) or not asset or len(asset) > 16:
        raise InputError("asset", "must be a short non-empty string")
    return acc, asset, _finite(body.get("amount"), "amount")
