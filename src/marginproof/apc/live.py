"""The live margin path: buffer with release, an hourly speed limit and hold-never-lower.

The engine computes, for every account it re-margins, the model's figure ``X`` (for ``dynamic``:
core, stressed weight, 10-year floor, stress floor and add-ons, i.e. ``model.margin().IM``).
This module turns the sequence of those figures into the *called* margin ``C`` the account is
asked to hold. Per account and per step ``k`` (log time ``t_k``, ms):

1. **rebase** when the account's own book changed (fill, account replacement): the state is
   carried to the new book so that the path tools act on market-driven changes only --
   ``A_ref = X_k r`` with ``r = A_{k-1} / X_{k-1}`` clipped to ``[1, 1 + b]`` (the buffer ratio
   is kept) and
   ``C_ref = A_ref + (C_{k-1} - A_{k-1}) min(1, A_ref / A_{k-1})`` (a lag or an excess is carried
   but never grown: new positions are margined in full, a smaller book shrinks it); otherwise
   ``A_ref = A_{k-1}``, ``C_ref = C_{k-1}``;
2. **buffer with release** (EMIR Art. 28(1)(a)): ``A_k = max(X_k, min((1 + b) X_k,
   A_ref (1 + g)^{dt_days}))``, ``A_0 = (1 + b) X_0`` -- exactly
   :func:`marginproof.apc.tools.buffer_with_release` on daily steps of a fixed book;
3. **speed limit** (new): ``C_k = max(f X_k, min(C_ref (1 + u)^{dt_h}, max(C_ref (1 - d)^{dt_h},
   A_k)))``: the called margin moves towards ``A_k`` by at most ``u`` per hour up and ``d`` per
   hour down (compounded over the elapsed hours, so the limit does not depend on how often
   ticks arrive), and never below the coverage floor ``f X_k``; off: ``C_k = A_k``;
4. **hold-never-lower**: on a degraded step (bad, stale or unpriceable data)
   ``A_k = max(A_k, A_{k-1})`` and ``C_k = max(C_k, C_{k-1})``.

While a *phase* is active (the market-response check, :mod:`marginproof.apc.market_response`,
found that applying a recalibration at once would feed a liquidation spiral) the rise limit is
``min(u, u_phase)`` and the floor ``min(f, f_phase)``.

:class:`LivePath` steps many accounts at once (numpy, the engine's hot path);
:func:`margin_path_reference` is the plain per-step twin the tests compare it with. Powers are
taken with :func:`math.pow` on the distinct elapsed times of a step (few: the accounts of one
tick share their previous update), so the two agree bit for bit and replay is exact.

Parameters are read from the model's ``[apc]`` table (see ``docs/models/apc.md`` for the
defaults and their sources); a model without one (``grid``, the venue presets) gets the
hold-never-lower path only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from marginproof.errors import InputError

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

MS_PER_HOUR = 3_600_000.0
MS_PER_DAY = 86_400_000.0


def _num(sec: Mapping[str, Any], path: str, key: str, lo: float, hi: float,
         default: float) -> float:
    v = sec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= float(v) <= hi):
        raise InputError(f"{path}.{key}", f"must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


def _flag(sec: Mapping[str, Any], path: str, key: str, default: bool) -> bool:
    v = sec.get(key, default)
    if not isinstance(v, bool):
        raise InputError(f"{path}.{key}", f"must be true or false, got {v!r}")
    return v


def _table(sec: Mapping[str, Any], path: str, key: str) -> Mapping[str, Any]:
    v = sec.get(key, {})
    if not isinstance(v, Mapping):
        raise InputError(f"{path}.{key}", "must be a table")
    return v


@dataclass(frozen=True)
class PhaseParams:
    """Tighter path limits while a phase is active (see :mod:`~marginproof.apc.market_response`).

    Attributes
    ----------
    up_per_hour : float
        Largest relative rise of the called margin per hour during the phase.
    min_coverage : float
        Coverage floor ``f`` during the phase.
    """

    up_per_hour: float = 0.02
    min_coverage: float = 0.6


@dataclass(frozen=True)
class PathParams:
    """Parameters of the live path (defaults: hold-never-lower only).

    Attributes
    ----------
    release_buffer : float
        ``b`` of the buffer with release (``[apc] release_buffer``; 0 = no buffer).
    rebuild_speed_per_day : float
        ``g``, largest daily regrowth of the buffer (``[apc] rebuild_speed``).
    speed_limit : bool
        Whether the hourly speed limit applies (``[apc.speed_limit] enabled``).
    up_per_hour, down_per_hour : float
        ``u`` and ``d``: largest relative rise / fall of the called margin per hour.
    min_coverage : float
        ``f``: the called margin is never below ``f X`` (1 = never below the model figure).
    phase : PhaseParams
    """

    release_buffer: float = 0.0
    rebuild_speed_per_day: float = 0.0
    speed_limit: bool = False
    up_per_hour: float = 0.10
    down_per_hour: float = 0.02
    min_coverage: float = 0.8
    phase: PhaseParams = PhaseParams()

    @classmethod
    def from_model_params(cls, params: Mapping[str, Any]) -> PathParams:
        """Read a model's ``[apc]`` table (absent: hold-never-lower only).

        Raises :class:`InputError` naming the field when a value is out of range.
        """
        apc = params.get("apc")
        if apc is None:
            return cls()
        if not isinstance(apc, Mapping):
            raise InputError("params.apc", "must be a table")
        p = "params.apc"
        b = _num(apc, p, "release_buffer", 0.0, 1.0, 0.25)
        g = _num(apc, p, "rebuild_speed", 0.0, 10.0, 0.0)
        sl = _table(apc, p, "speed_limit")
        sp = f"{p}.speed_limit"
        enabled = _flag(sl, sp, "enabled", False)
        up = _num(sl, sp, "up_per_hour", 1e-6, 100.0, 0.10)
        down = _num(sl, sp, "down_per_hour", 1e-6, 1.0, 0.02)
        f = _num(sl, sp, "min_coverage", 0.0, 1.0, 0.8)
        mr = _table(apc, p, "market_response")
        mp = f"{p}.market_response"
        phase = PhaseParams(_num(mr, mp, "phase_up_per_hour", 1e-6, 100.0, 0.02),
                            _num(mr, mp, "phase_min_coverage", 0.0, 1.0, 0.6))
        return cls(b, g, enabled, up, down, f, phase)

    @property
    def hold_only(self) -> bool:
        """True when the path is the identity except for hold-never-lower."""
        return self.release_buffer == 0.0 and not self.speed_limit

    def to_dict(self) -> dict[str, Any]:
        return {"release_buffer": self.release_buffer,
                "rebuild_speed_per_day": self.rebuild_speed_per_day,
                "speed_limit": self.speed_limit, "up_per_hour": self.up_per_hour,
                "down_per_hour": self.down_per_hour, "min_coverage": self.min_coverage,
                "phase_up_per_hour": self.phase.up_per_hour,
                "phase_min_coverage": self.phase.min_coverage}


# -- the plain twin --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Prev:
    x: float
    a: float
    c: float
    t_ms: int


def _in_phase(t_ms: int, phases: Sequence[tuple[int, int]]) -> bool:
    return any(s <= t_ms < e for s, e in phases)


def _pow(base: float, hours: float) -> float:
    """``base ** hours`` by :func:`math.pow`; ``inf`` past the float range (no limit left)."""
    try:
        return math.pow(base, hours)
    except OverflowError:
        return math.inf


def _limits(p: PathParams, in_phase: bool) -> tuple[float, float | None, float] | None:
    """``(u, d, f)`` in force (``d`` None: no fall limit), or None when nothing limits."""
    if p.speed_limit:
        if in_phase:
            return (min(p.up_per_hour, p.phase.up_per_hour), p.down_per_hour,
                    min(p.min_coverage, p.phase.min_coverage))
        return p.up_per_hour, p.down_per_hour, p.min_coverage
    if in_phase:
        return p.phase.up_per_hour, None, p.phase.min_coverage
    return None


def reference_step(prev: _Prev | None, x: float, t_ms: int, book_changed: bool, degraded: bool,
                   p: PathParams, in_phase: bool = False) -> tuple[float, float]:
    """One step of one account, plain Python (see module docstring). Returns ``(A, C)``."""
    up_buf = 1.0 + p.release_buffer
    if prev is None:
        a = up_buf * x
        return a, a
    if book_changed:
        a_ref = x * (min(max(prev.a / prev.x, 1.0), up_buf) if prev.x > 0.0 else up_buf)
        c_ref = (a_ref + (prev.c - prev.a) * min(1.0, a_ref / prev.a)) if prev.a > 0.0 \
            else a_ref
    else:
        a_ref, c_ref = prev.a, prev.c
    dt = float(t_ms - prev.t_ms)
    if dt < 0.0:
        dt = 0.0
    grow = _pow(1.0 + p.rebuild_speed_per_day, dt / MS_PER_DAY)
    a = max(x, min(up_buf * x, a_ref * grow))
    lim = _limits(p, in_phase)
    if lim is not None:
        u, d, f = lim
        h = dt / MS_PER_HOUR
        fac = _pow(1.0 + u, h)
        hi = math.inf if fac == math.inf else c_ref * fac
        lo = 0.0 if d is None else c_ref * _pow(1.0 - d, h)
        c = max(f * x, min(hi, max(lo, a)))
    else:
        c = a
    if degraded:
        a = max(a, prev.a)
        c = max(c, prev.c)
    return a, c


def margin_path_reference(x: Sequence[float], t_ms: Sequence[int],
                          book_changed: Sequence[bool], degraded: Sequence[bool],
                          params: PathParams,
                          phases: Sequence[tuple[int, int]] = ()) -> tuple[FloatArray, FloatArray]:
    """The path of one account over a sequence of steps, plain Python (the reference twin).

    Parameters
    ----------
    x : sequence of float, length n
        The model's figure at each step (USD, >= 0).
    t_ms : sequence of int, length n
        Log time of each step (non-decreasing).
    book_changed, degraded : sequences of bool, length n
    params : PathParams
    phases : sequence of ``(start_ms, end_ms)``
        Windows during which the phase limits apply.

    Returns
    -------
    buffered, called : ndarray, shape (n,)
    """
    n = len(x)
    if not (len(t_ms) == len(book_changed) == len(degraded) == n):
        raise InputError("path", "x, t_ms, book_changed and degraded must have one entry a step")
    a_out = np.empty(n)
    c_out = np.empty(n)
    prev: _Prev | None = None
    for k in range(n):
        xk = float(x[k])
        if not (math.isfinite(xk) and xk >= 0.0):
            raise InputError(f"x[{k}]", f"margin figure must be finite and >= 0, got {xk!r}")
        tk = int(t_ms[k])
        a, c = reference_step(prev, xk, tk, bool(book_changed[k]), bool(degraded[k]), params,
                              _in_phase(tk, phases))
        a_out[k], c_out[k] = a, c
        prev = _Prev(xk, a, c, tk)
    return a_out, c_out


# -- the vectorised stage ----------------------------------------------------------------------
def _pow_on_distinct(base: float, hours: FloatArray) -> FloatArray:
    """``base ** hours`` elementwise with :func:`math.pow` on the distinct values (exact twin)."""
    if base == 1.0 or hours.size == 0:
        return np.ones(hours.shape[0])
    h0 = float(hours[0])
    if bool(np.all(hours == h0)):  # the usual tick: every account last stepped together
        return np.full(hours.shape[0], _pow(base, h0))
    uniq, inv = np.unique(hours, return_inverse=True)
    vals = np.array([_pow(base, float(h)) for h in uniq.tolist()])
    return np.asarray(vals[inv.reshape(-1)], dtype=np.float64)


def _grow(a: NDArray[Any], n: int) -> NDArray[Any]:
    if n <= a.shape[0]:
        return a
    out = np.zeros(max(n, 2 * a.shape[0], 16), a.dtype)
    out[: a.shape[0]] = a
    return out


@dataclass(frozen=True)
class PathStep:
    """What one :meth:`LivePath.step` produced for the accounts it was given, shape (n,) each.

    ``called - figure = (buffered - figure) + (called - buffered)``: the buffer component and the
    speed-limit/hold component (negative while a rise is being phased in).
    """

    figure: FloatArray
    buffered: FloatArray
    called: FloatArray
    limited: BoolArray
    held: BoolArray


class LivePath:
    """Per-account path state (rows = the engine's account index), stepped in batches."""

    def __init__(self, params: PathParams | None = None) -> None:
        self.params = params or PathParams()
        self.x = np.zeros(0)
        self.a = np.zeros(0)
        self.c = np.zeros(0)
        self.t_ms = np.zeros(0, np.int64)
        self.has = np.zeros(0, bool)
        self.phases: list[tuple[int, int]] = []

    def set_params(self, params: PathParams) -> None:
        """New parameters from the next step on (the state is kept: no jump on a change)."""
        self.params = params

    def add_phase(self, start_ms: int, end_ms: int) -> None:
        """Apply the phase limits on ``[start_ms, end_ms)`` (merged with an overlapping one)."""
        if end_ms <= start_ms:
            return
        if self.phases and self.phases[-1][1] >= start_ms:
            s, e = self.phases[-1]
            self.phases[-1] = (s, max(e, end_ms))
        else:
            self.phases.append((int(start_ms), int(end_ms)))

    def in_phase(self, t_ms: int) -> bool:
        return _in_phase(t_ms, self.phases[-2:])

    def _ensure(self, n: int) -> None:
        if n > self.x.shape[0]:
            self.x = _grow(self.x, n)
            self.a = _grow(self.a, n)
            self.c = _grow(self.c, n)
            self.t_ms = _grow(self.t_ms, n)
            self.has = _grow(self.has, n)

    def called(self, idx: IntArray) -> FloatArray:
        """Current called margin of accounts ``idx`` (0 where never stepped)."""
        self._ensure(int(idx.max()) + 1 if idx.size else 0)
        return np.where(self.has[idx], self.c[idx], 0.0)

    def preview(self, idx: IntArray, x: FloatArray, t_ms: int, book_changed: bool | BoolArray,
                degraded: BoolArray | bool, in_phase: bool | None = None) -> PathStep:
        """What :meth:`step` would give, without changing the state."""
        return self._compute(idx, x, t_ms, book_changed, degraded, in_phase)

    def step(self, idx: IntArray, x: FloatArray, t_ms: int, book_changed: bool | BoolArray,
             degraded: BoolArray | bool) -> PathStep:
        """Advance accounts ``idx`` (distinct rows) to figures ``x`` at log time ``t_ms``.

        Parameters
        ----------
        idx : int ndarray, shape (n,)
        x : ndarray, shape (n,)
            The model's figures (USD, finite, >= 0).
        t_ms : int
            Log time of the step.
        book_changed, degraded : bool or bool ndarray, shape (n,)
        """
        out = self._compute(idx, x, t_ms, book_changed, degraded, None)
        self.x[idx] = out.figure
        self.a[idx] = out.buffered
        self.c[idx] = out.called
        self.t_ms[idx] = np.maximum(self.t_ms[idx], int(t_ms))
        self.has[idx] = True
        return out

    def _compute(self, idx: IntArray, x: FloatArray, t_ms: int, book_changed: bool | BoolArray,
                 degraded: BoolArray | bool, in_phase: bool | None) -> PathStep:
        idx = np.asarray(idx, dtype=np.int64)
        n = idx.shape[0]
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (n,):
            raise InputError("x", f"need one figure per account, shape ({n},)")
        if n and not (np.all(np.isfinite(x)) and np.all(x >= 0.0)):
            raise InputError("x", "margin figures must be finite and >= 0")
        self._ensure(int(idx.max()) + 1 if n else 0)
        p = self.params
        bc = np.broadcast_to(np.asarray(book_changed, dtype=bool), (n,))
        dg = np.broadcast_to(np.asarray(degraded, dtype=bool), (n,))
        has = self.has[idx]
        px, pa, pc = self.x[idx], self.a[idx], self.c[idx]
        up_buf = 1.0 + p.release_buffer
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio = np.where(px > 0.0, np.minimum(np.maximum(pa / px, 1.0), up_buf), up_buf)
            a_rb = x * ratio
            c_rb = np.where(pa > 0.0, a_rb + (pc - pa) * np.minimum(1.0, a_rb / pa), a_rb)
        a_ref = np.where(bc, a_rb, pa)
        c_ref = np.where(bc, c_rb, pc)
        dt = np.maximum(0.0, (int(t_ms) - self.t_ms[idx]).astype(np.float64))
        grow = _pow_on_distinct(1.0 + p.rebuild_speed_per_day, dt / MS_PER_DAY)
        a = np.maximum(x, np.minimum(up_buf * x, a_ref * grow))
        phase = self.in_phase(int(t_ms)) if in_phase is None else in_phase
        lim = _limits(p, phase)
        if lim is not None:
            u, d, f = lim
            h = dt / MS_PER_HOUR
            fac = _pow_on_distinct(1.0 + u, h)
            with np.errstate(invalid="ignore"):
                hi = np.where(fac == np.inf, np.inf, c_ref * fac)
            lo = np.zeros(n) if d is None else c_ref * _pow_on_distinct(1.0 - d, h)
            c = np.maximum(f * x, np.minimum(hi, np.maximum(lo, a)))
        else:
            c = a
        a = np.where(dg, np.maximum(a, pa), a)
        c_lim = c
        c = np.where(dg, np.maximum(c, pc), c)
        first = ~has
        a = np.where(first, up_buf * x, a)
        c = np.where(first, a, c)
        held = dg & has & (c > c_lim)
        limited = has & (c_lim != a)
        return PathStep(x.copy(), a, c, limited, held)

    def state_of(self, i: int) -> dict[str, float] | None:
        """Path state of account row ``i`` (figure, buffered, called, last step time)."""
        if i >= self.has.shape[0] or not self.has[i]:
            return None
        return {"figure": float(self.x[i]), "buffered": float(self.a[i]),
                "called": float(self.c[i]), "t_ms": float(self.t_ms[i])}
