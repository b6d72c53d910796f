"""Tick quality checks: NaN, duplicate, out-of-order, late (stale) and jumping ticks.

The validator is a small state machine over the ticks it has accepted; it never uses a clock:
the time a tick was received is the log's ``logged_at_ms``. A rejected tick changes no market
data; the engine then holds (never lowers) the margins of the affected accounts and raises an
alert. A *jump* (a log move larger than ``max_jump``) is quarantined until a second tick
confirms the new level (within ``confirm_tolerance``), so a single bad print cannot move margins
while a real market move is accepted one tick later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from marginproof.engine.ticks import Tick
from marginproof.market.snapshot import MAX_VOL_ANNUAL


class TickProblem(StrEnum):
    """Why a tick was not accepted."""

    NAN = "nan"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    STALE = "stale"
    JUMP = "jump"


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """Thresholds of the tick checks.

    Attributes
    ----------
    max_delay_ms : int
        A tick received more than this after its exchange time is stale.
    latency_exempt_sources : tuple of str
        Sources whose exchange times are historical (replays): no delay check.
    max_jump : float
        Largest accepted ``|ln(new / last)|`` of a price in one tick (0.15 ~ 16 %).
    max_vol_jump : float
        Same for implied vols (``|ln|``, 0.7 ~ x2).
    confirm_tolerance : float
        A quarantined jump is confirmed by a tick within this ``|ln|`` of it.
    """

    max_delay_ms: int = 5_000
    latency_exempt_sources: tuple[str, ...] = ("replay",)
    max_jump: float = 0.15
    max_vol_jump: float = 0.7
    confirm_tolerance: float = 0.02


@dataclass(frozen=True, slots=True)
class Verdict:
    """Outcome of a check: ``problem`` is None when the tick is accepted."""

    problem: TickProblem | None
    detail: str = ""
    confirmed_jump: bool = False

    @property
    def accepted(self) -> bool:
        return self.problem is None


@dataclass
class _Stream:
    last_ms: int
    last_seq: int | None
    last_digest: str


@dataclass
class TickValidator:
    """Checks ticks against what was accepted before (see module docstring)."""

    config: QualityConfig = field(default_factory=QualityConfig)
    _streams: dict[str, _Stream] = field(default_factory=dict)
    _last: dict[str, float] = field(default_factory=dict)
    _pending: dict[str, float] = field(default_factory=dict)

    def check(self, tick: Tick, received_ms: int) -> Verdict:
        """Judge ``tick`` received at ``received_ms``; accepted ticks update the state."""
        bad = _bad_values(tick)
        if bad:
            return Verdict(TickProblem.NAN, bad)
        st = self._streams.get(tick.stream)
        digest = tick.payload_digest()
        if st is not None:
            if tick.seq is not None and st.last_seq is not None and tick.seq == st.last_seq:
                return Verdict(TickProblem.DUPLICATE, f"sequence {tick.seq} seen before")
            if tick.exchange_ms == st.last_ms and digest == st.last_digest:
                return Verdict(TickProblem.DUPLICATE, "same time and content as the last tick")
            if tick.seq is not None and st.last_seq is not None and tick.seq < st.last_seq:
                return Verdict(TickProblem.OUT_OF_ORDER,
                               f"sequence {tick.seq} after {st.last_seq}")
            if tick.exchange_ms < st.last_ms:
                return Verdict(TickProblem.OUT_OF_ORDER,
                               f"exchange time {tick.exchange_ms} after {st.last_ms}")
        cfg = self.config
        if tick.source not in cfg.latency_exempt_sources:
            delay = received_ms - tick.exchange_ms
            if delay > cfg.max_delay_ms:
                return Verdict(TickProblem.STALE,
                               f"received {delay} ms after exchange time (max {cfg.max_delay_ms})")
        jumps: list[str] = []
        confirmed = False
        for key, v in tick.values():
            last = self._last.get(key)
            if last is None:
                continue
            limit = cfg.max_vol_jump if key.startswith("vol:") else cfg.max_jump
            move = abs(math.log(v) - math.log(last))
            if move <= limit:
                continue
            pend = self._pending.get(key)
            if pend is not None and abs(math.log(v) - math.log(pend)) <= cfg.confirm_tolerance:
                confirmed = True
                continue
            jumps.append(f"{key} {last:g} -> {v:g} (|ln| {move:.3f} > {limit})")
        # the stream advanced even if the content is quarantined: later ticks are in order
        self._streams[tick.stream] = _Stream(tick.exchange_ms, tick.seq, digest)
        if jumps:
            for key, v in tick.values():
                if any(j.startswith(f"{key} ") for j in jumps):
                    self._pending[key] = v
            return Verdict(TickProblem.JUMP, "; ".join(jumps))
        for key, v in tick.values():
            self._last[key] = v
            self._pending.pop(key, None)
        return Verdict(None, "confirmed jump" if confirmed else "", confirmed)

    def seed(self, key: str, value: float) -> None:
        """Record an accepted value that did not come from a tick (a full market snapshot)."""
        self._last[key] = value
        self._pending.pop(key, None)


def _bad_values(tick: Tick) -> str:
    for key, v in tick.values():
        if not math.isfinite(v):
            return f"{key} is {v!r}"
        if v <= 0.0:
            return f"{key} must be positive, got {v!r}"
        if key.startswith("vol:") and v > MAX_VOL_ANNUAL:
            return f"{key} vol {v!r} is absurd"
    for k, f in tick.funding_rates:
        if not math.isfinite(f) or abs(f) > 0.1:
            return f"funding:{k} is {f!r}"
    return ""
