"""The market-data guard: which ticks may change the market the engine margins against.

The validator is a small state machine over the ticks it has accepted; it never uses a clock:
the time a tick was received is the log's ``logged_at_ms`` and market time is the tick's
exchange time (checked against the log clock). A refused tick changes no market data; the
engine then holds (never lowers) the margins of the exposed accounts and raises an alert.

**The rule** (``docs/service.md``, "The market-data guard"). For every market value the engine
uses -- index ``index:<und>``, futures/perpetual/spot mark ``mark:<name>``, forward
``fwd:<und>:<expiry>``, implied vol ``vol:<option>`` -- the guard keeps a *band* of its guarded
quantity ``x``: ``ln(value)`` for an index or a vol, the basis ``ln(value / index)`` for a mark
or a forward (they follow their index, which is guarded itself: the index corroborates them).
The band is the intersection, over every ``x_i`` accepted at market time ``t_i`` since the last
reset, of ``[x_i - J - rho (t - t_i), x_i + J + rho (t - t_i)]`` (``J = max_jump``, ``rho =
max_drift_per_s``; vols: ``max_vol_jump``, ``max_vol_drift_per_s``). Every term widens at the
same rate, so the intersection is two numbers and a time: O(1) per value.

* A value inside the band is accepted and narrows the band.
* A value outside is refused (``jump`` if it is more than ``J`` from the last value, else
  ``slide``: a run of small moves adding up to too much) unless it is **corroborated**: another
  source (a different ``tick.source``: another venue) reported a value within
  ``confirm_tolerance`` in the last ``confirm_window_ms``. A corroborated value resets the band
  around itself. A source never corroborates itself.
* **First prints** (no band yet): a mark or forward must lie within ``max_basis +
  max_basis_per_year * years to expiry`` of the index (the index of the same tick when it is
  accepted, else the last accepted one); a vol within ``max_vol_first`` of the median accepted
  vol of its underlying; a value with no reference at all (an index nobody seeded) needs a
  second source, or the same source repeating it (within ``confirm_tolerance``) at least
  ``first_confirm_ms`` of market time later (time).
* A market snapshot (``market`` entry, :meth:`TickValidator.seed`) resets the bands.
* A tick stamped more than ``max_future_ms`` ahead of the log clock is refused (``future``)
  and does *not* advance its stream, so the true ticks after it are not taken as out of order.

Hence the bound: **one source alone can move an index or a vol by at most ``B(dt) = J + rho *
dt`` (|ln|) over ``dt`` of market time** (defaults: 15 % at once and a further 15 % a minute),
and the basis of a mark or a forward to its index by ``B(dt)`` from its last accepted basis
(or from 0 plus the first-print allowance). No sequence of its ticks can therefore lower a
margin below the lowest margin over the markets inside those bands around the last
corroborated values; a larger move waits for a second source (or, for a first print, for time)
while the exposed accounts are held. Option marks are not guarded:
the engine prices options from vols and forwards, never from their marks.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

from marginproof.config.limits import MAX_FUNDING, price_problem, vol_problem
from marginproof.engine.ticks import Tick
from marginproof.errors import InputError
from marginproof.instruments.names import parse_instrument


class TickProblem(StrEnum):
    """Why a tick was not accepted."""

    NAN = "nan"  # not a finite positive number within the documented limits
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    STALE = "stale"
    FUTURE = "future"
    JUMP = "jump"
    SLIDE = "slide"
    OUT_OF_RANGE = "out_of_range"
    UNCONFIRMED = "unconfirmed"


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """Thresholds of the guard (see the module docstring for the rule they define).

    Attributes
    ----------
    max_delay_ms : int
        A tick received more than this after its exchange time is stale.
    max_future_ms : int
        Clock-skew tolerance: a tick stamped more than this after the log clock is refused.
    latency_exempt_sources : tuple of str
        Sources whose exchange times are historical (replays): no delay or future check.
    max_jump : float
        ``J``: the band's half-width, ``|ln|`` (0.15 ~ 16 %).
    max_drift_per_s : float
        ``rho``: how fast the band widens per second of market time (0.0025 ~ 15 % a minute).
    max_vol_jump, max_vol_drift_per_s : float
        The same for implied vols (0.7 ~ x2 at once, 0.7 a minute).
    confirm_tolerance : float
        Two values within this ``|ln|`` of each other agree.
    confirm_window_ms : int
        How long a refused value can still be corroborated by another source.
    first_confirm_ms : int
        A first print with no reference is confirmed by its own source after this long.
    max_basis, max_basis_per_year : float
        First print of a mark or forward: largest ``|ln(value / index)|`` is
        ``max_basis + max_basis_per_year * years to expiry`` (perpetuals and spot: 5 %).
    max_vol_first : float
        First print of a vol: largest ``|ln(vol / median vol of the underlying)|``.
    """

    max_delay_ms: int = 5_000
    max_future_ms: int = 2_000
    latency_exempt_sources: tuple[str, ...] = ("replay",)
    max_jump: float = 0.15
    max_drift_per_s: float = 0.0025
    max_vol_jump: float = 0.7
    max_vol_drift_per_s: float = 0.01
    confirm_tolerance: float = 0.02
    confirm_window_ms: int = 60_000
    first_confirm_ms: int = 10_000
    max_basis: float = 0.05
    max_basis_per_year: float = 0.5
    max_vol_first: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_jump", "max_vol_jump", "confirm_tolerance", "max_basis",
                     "max_vol_first"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise InputError(f"quality.{name}", "must be a positive number")
        for name in ("max_drift_per_s", "max_vol_drift_per_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise InputError(f"quality.{name}", "must be a non-negative number")
        if self.confirm_tolerance >= self.max_jump:
            raise InputError("quality.confirm_tolerance", "must be below max_jump")

    def bound(self, dt_ms: float, vol: bool = False) -> float:
        """The most one source can move a value (``|ln|``) over ``dt_ms`` of market time."""
        j, rho = (self.max_vol_jump, self.max_vol_drift_per_s) if vol else \
            (self.max_jump, self.max_drift_per_s)
        return j + rho * max(0.0, dt_ms) / 1000.0


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
class _Band:
    """Accepted range of the guarded quantity at market time ``t_ms`` (widens with time).

    The quantity is ``ln(value)`` for an index or a vol and the basis ``ln(value / index)``
    for a mark or a forward (so they follow their index, which is guarded itself).
    """

    lo: float
    hi: float
    t_ms: int | None  # None: anchored at the next check (a seed carries no market time)
    last: float  # last accepted guarded quantity
    value: float  # last accepted value

    def at(self, t_ms: int, rate_per_ms: float) -> tuple[float, float]:
        w = 0.0 if self.t_ms is None else rate_per_ms * max(0, t_ms - self.t_ms)
        return self.lo - w, self.hi + w


@dataclass(frozen=True, slots=True)
class _Ok:
    quantity: float
    reset: bool  # corroborated: the band restarts around the value


@dataclass(frozen=True, slots=True)
class _KeyInfo:
    kind: str  # index | mark | fwd | vol
    underlying: str
    expiry_ms: int | None  # marks of futures and forwards


_YEAR_MS = 365.25 * 86_400_000


@lru_cache(maxsize=65536)
def _info(key: str, tick_underlying: str) -> _KeyInfo | None:
    """What a value key is; None for keys the guard does not judge (option marks)."""
    kind, _, rest = key.partition(":")
    if kind == "index":
        return _KeyInfo("index", rest, None)
    if kind == "fwd":
        und, _, exp = rest.rpartition(":")
        return _KeyInfo("fwd", und or tick_underlying, int(exp) if exp.isdigit() else None)
    try:
        inst = parse_instrument(rest)
    except InputError:
        return _KeyInfo(kind, tick_underlying, None)
    if kind == "mark" and inst.is_option:
        return None  # option marks do not reach the engine's prices (vols and forwards do)
    exp_ms = None if inst.expiry is None else int(inst.expiry.timestamp() * 1000)
    return _KeyInfo(kind, inst.underlying, exp_ms)


@dataclass
class TickValidator:
    """Judges ticks against what was accepted before (see module docstring)."""

    config: QualityConfig = field(default_factory=QualityConfig)
    _streams: dict[str, _Stream] = field(default_factory=dict)
    _bands: dict[str, _Band] = field(default_factory=dict)
    # refused values that another source may corroborate: key -> source -> (value, market ms)
    _pending: dict[str, dict[str, tuple[float, int]]] = field(default_factory=dict)
    # accepted vols per underlying (first-print reference)
    _vols: dict[str, dict[str, float]] = field(default_factory=dict)

    # -- public -------------------------------------------------------------------------------
    def check(self, tick: Tick, received_ms: int) -> Verdict:
        """Judge ``tick`` received at ``received_ms`` (log clock); accepted ticks update state."""
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
            ahead = tick.exchange_ms - received_ms
            if ahead > cfg.max_future_ms:
                # not recorded as the stream's position: the true ticks after it stay in order
                return Verdict(TickProblem.FUTURE, f"exchange time {ahead} ms after the log "
                               f"clock (clock-skew tolerance {cfg.max_future_ms} ms)")
            delay = -ahead
            if delay > cfg.max_delay_ms:
                return Verdict(TickProblem.STALE,
                               f"received {delay} ms after exchange time (max {cfg.max_delay_ms})")
        t = tick.exchange_ms
        guarded = [(k, v, i) for k, v in tick.values()
                   if (i := _info(k, tick.underlying)) is not None]
        # the index every mark/forward of this tick is judged against: the tick's own index
        # when it is accepted with it, else the last accepted one
        indices: dict[str, float | None] = {}
        problems: list[tuple[TickProblem, str]] = []
        outcome: list[tuple[str, float, _KeyInfo, _Ok]] = []
        medians: dict[str, float | None] = {}
        for key, v, info in sorted(guarded, key=lambda g: g[2].kind != "index"):
            ref = None
            if info.kind in ("mark", "fwd"):
                ref = indices.get(info.underlying, self.reference(f"index:{info.underlying}"))
            res = self._judge(key, v, info, ref, tick, t, medians)
            if not isinstance(res, _Ok):
                problems.append(res)
                continue
            outcome.append((key, v, info, res))
            if info.kind == "index":
                indices[info.underlying] = v
        # the stream advanced even if the content is refused: later ticks are in order
        self._streams[tick.stream] = _Stream(t, tick.seq, digest)
        if problems:
            taken = {k for k, _, _, _ in outcome}
            for key, v, _ in guarded:
                if key not in taken:
                    self._hold_pending(key, tick.source, v, t)
            order = list(TickProblem)
            worst = min((p for p, _ in problems), key=order.index)
            return Verdict(worst, "; ".join(d for _, d in problems))
        confirmed = False
        for key, v, info, ok_ in outcome:
            self._accept(key, v, info, ok_, t)
            confirmed = confirmed or ok_.reset
        return Verdict(None, "corroborated by a second source" if confirmed else "", confirmed)

    def seed(self, key: str, value: float) -> None:
        """Record a value that did not come from a tick (a full market snapshot): resets its
        band around ``value``. Seed an underlying's index before its marks and forwards."""
        info = _info(key, "")
        if info is None or not (math.isfinite(value) and value > 0):
            return
        q = math.log(value)
        if info.kind in ("mark", "fwd"):
            idx = self.reference(f"index:{info.underlying}")
            if idx is None:
                return  # no basis without an index: the first tick is a first print
            q -= math.log(idx)
        j = self._limits(info)[0]
        self._bands[key] = _Band(q - j, q + j, None, q, value)
        self._pending.pop(key, None)
        self._note_vol(info, key, value)

    def reference(self, key: str) -> float | None:
        """The last accepted value of ``key`` (None if it has none)."""
        b = self._bands.get(key)
        return None if b is None else b.value

    # -- internals ------------------------------------------------------------------------------
    def _limits(self, info: _KeyInfo) -> tuple[float, float]:
        """``(J, rho per ms)`` of a key."""
        c = self.config
        if info.kind == "vol":
            return c.max_vol_jump, c.max_vol_drift_per_s / 1000.0
        return c.max_jump, c.max_drift_per_s / 1000.0

    def _judge(self, key: str, v: float, info: _KeyInfo, index: float | None, tick: Tick,
               t: int, medians: dict[str, float | None]
               ) -> _Ok | tuple[TickProblem, str]:
        """What to accept (the guarded quantity, whether corroborated), else the problem."""
        cfg = self.config
        j, rate = self._limits(info)
        q = math.log(v)
        if info.kind in ("mark", "fwd"):
            if index is None:
                return TickProblem.UNCONFIRMED, (f"{key} {v:g}: no accepted index of "
                                                 f"{info.underlying} to check it against")
            q -= math.log(index)
        band = self._bands.get(key)
        if band is not None:
            if band.t_ms is None:
                band.t_ms = t  # a seed's drift allowance starts at the first tick after it
            lo, hi = band.at(t, rate)
            if lo <= q <= hi:
                return _Ok(q, False)
            if self._corroborated(key, v, tick.source, t):
                return _Ok(q, True)
            step = abs(q - band.last)
            kind = TickProblem.JUMP if step > j else TickProblem.SLIDE
            what = "basis " if info.kind in ("mark", "fwd") else ""
            return kind, (f"{key} {band.value:g} -> {v:g}: {what}{kind} of |ln| {step:.3f} "
                          f"outside the band of one source ({math.exp(lo - band.last):.3f}x.."
                          f"{math.exp(hi - band.last):.3f}x); needs a second source")
        if self._corroborated(key, v, tick.source, t):
            return _Ok(q, True)
        # first print
        if info.kind in ("mark", "fwd"):
            limit = cfg.max_basis + cfg.max_basis_per_year * max(
                0.0, ((info.expiry_ms or t) - t) / _YEAR_MS)
            if abs(q) <= limit:
                return _Ok(q, False)
            return TickProblem.OUT_OF_RANGE, (f"{key} first print {v:g} is {abs(q):.3f} (|ln|) "
                                              f"from the index {index:g} (max {limit:.3f})")
        if info.kind == "vol":
            und = info.underlying
            if und not in medians:
                known = self._vols.get(und)
                medians[und] = statistics.median(known.values()) if known else None
            med = medians[und]
            if med is not None:
                if abs(q - math.log(med)) <= cfg.max_vol_first:
                    return _Ok(q, False)
                return TickProblem.OUT_OF_RANGE, (
                    f"{key} first print {v:g} is off the median vol {med:g} of {und} "
                    f"(|ln| > {cfg.max_vol_first})")
        pend = self._pending.get(key, {}).get(tick.source)
        if pend is not None and t - pend[1] >= cfg.first_confirm_ms \
                and abs(q - math.log(pend[0])) <= cfg.confirm_tolerance:
            return _Ok(q, True)  # corroborated by time: the same level held long enough
        return TickProblem.UNCONFIRMED, (f"{key} first print {v:g} has no reference: needs a "
                                         f"second source, or the same value again "
                                         f"{cfg.first_confirm_ms} ms later")

    def _corroborated(self, key: str, v: float, source: str, t: int) -> bool:
        cfg = self.config
        lv = math.log(v)
        for other, (p, tp) in self._pending.get(key, {}).items():
            if other != source and abs(t - tp) <= cfg.confirm_window_ms \
                    and abs(lv - math.log(p)) <= cfg.confirm_tolerance:
                return True
        return False

    def _accept(self, key: str, v: float, info: _KeyInfo, ok: _Ok, t: int) -> None:
        j, rate = self._limits(info)
        q = ok.quantity
        band = self._bands.get(key)
        if band is None or ok.reset:
            self._bands[key] = _Band(q - j, q + j, t, q, v)
        else:
            # the band at the later of its time and the tick's (a tick of another stream may
            # be older: its own cone is then taken at the band's time, which is tighter)
            t_ref = t if band.t_ms is None else max(band.t_ms, t)
            lo, hi = band.at(t_ref, rate)
            band.lo, band.hi, band.t_ms = max(lo, q - j), min(hi, q + j), t_ref
            band.last, band.value = q, v
        self._pending.pop(key, None)
        self._note_vol(info, key, v)

    def _hold_pending(self, key: str, source: str, v: float, t: int) -> None:
        """Remember a refused value; a level the source repeats keeps its first time."""
        by_source = self._pending.setdefault(key, {})
        prev = by_source.get(source)
        if prev is not None and abs(math.log(v) - math.log(prev[0])) <= \
                self.config.confirm_tolerance:
            return
        by_source[source] = (v, t)

    def _note_vol(self, info: _KeyInfo, key: str, v: float) -> None:
        if info.kind == "vol":
            self._vols.setdefault(info.underlying, {})[key] = v


def _bad_values(tick: Tick) -> str:
    for key, v in tick.values():
        why = vol_problem(v) if key.startswith("vol:") else price_problem(v)
        if why:
            return f"{key} {why}"
    for k, f in tick.funding_rates:
        if not math.isfinite(f) or abs(f) > MAX_FUNDING:
            return f"funding:{k} is {f!r} (|funding| <= {MAX_FUNDING})"
    return ""
