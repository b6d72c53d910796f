"""Range proofs ``0 <= v < 2^64`` for Pedersen commitments: base-b digits, aggregated, batched.

Construction (``mp-range/v1``; a Sigma protocol made non-interactive with strong Fiat-Shamir).
Statement: commitments ``V_j = v_j G + gamma_j H`` (j < m) and a context (epoch header hash, tag,
field names). Each ``v_j`` is written in base ``b`` (2, 4 or 16) with ``n = 64 / log2 b`` digits;
the ``N = m n`` digits ``a_i`` go into one vector commitment.

Prover::

    A = alpha H + sum a_i G_i          S = rho H + sum s_i G_i          (s_i random)
    y, w = H(ctx, V, A, S)
    Q(X) = sum_i y^(i+1) prod_{j<b} ((a_i - j) X + s_i)     # X^b coefficient is 0 iff digits
    T_k = q_k G + tau_k H (k < b)     T_s = t_s G + tau_s H,  t_s = sum_j w^j sum_i b^i s_ji
    x = H(..., T, T_s)
    f_i = a_i x + s_i,  z_a = alpha x + rho,  z_t = sum tau_k x^k,  z_v = x sum w^j gamma_j + tau_s

Verifier::

    (i)   x A + S           == sum f_i G_i + z_a H
    (ii)  sum_k x^k T_k     == Q'(x) G + z_t H,   Q'(x) = sum_i y^(i+1) prod_j (f_i - j x)
    (iii) x sum w^j V_j + T_s == (sum_j w^j sum_i b^i f_ji) G + z_v H

Soundness: (i) binds f to ``x a + s`` for the committed ``a`` (two transcripts extract a, s).
(ii) holds for b+1 challenges only if the degree-b polynomial vanishes identically; its ``X^b``
coefficient is ``sum_i y^(i+1) prod_j (a_i - j)``, and y is drawn after A, so every
``prod_j (a_i - j) = 0``: each ``a_i`` is a digit in ``[0, b)`` (Schwartz-Zippel, error N/L).
(iii) then gives ``v_j = sum_i b^i a_ji < b^n = 2^64`` (error m/L). Zero knowledge: f, z_a, z_t,
z_v are uniform, A, S, T hiding; a simulator picks them and solves for S, T_0, T_s.

Cost (libsodium has no multi-scalar multiplication, so every ``s P`` is one call): the prover
does N + 2 + b variable-base multiplications (the bit-by-bit CDS proof needs about 2 per bit),
and a *batch* of K proofs is checked as one random linear combination whose generator part
costs N multiplications for the whole batch plus ``3 + b + m`` per proof.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from marginproof.errors import InputError
from marginproof.proofs.errors import VerificationError
from marginproof.proofs.group import (
    IDENTITY,
    L,
    NonceStream,
    add,
    base_mul,
    challenge,
    generator_h,
    generator_multiples,
    mul,
    parse_point,
    parse_scalar,
    point_sum,
    sc,
    vector_generators,
)

BITS = 64
BASES = {2: 1, 4: 2, 16: 4}
MAGIC = b"MPR1"
_CTX_Y = b"marginproof/v1/range/y"
_CTX_W = b"marginproof/v1/range/w"
_CTX_X = b"marginproof/v1/range/x"
_CTX_BATCH = b"marginproof/v1/range/batch"


def n_digits(base: int) -> int:
    """Digits per 64-bit value in ``base``."""
    if base not in BASES:
        raise InputError("range.base", f"base must be one of {sorted(BASES)}, got {base}")
    return BITS // BASES[base]


@dataclass(frozen=True)
class RangeProof:
    """An aggregated range proof for ``m`` commitments (see module docstring)."""

    base: int
    m: int
    A: bytes
    S: bytes
    T: tuple[bytes, ...]
    Ts: bytes
    f: tuple[int, ...]
    z_a: int
    z_t: int
    z_v: int

    def to_bytes(self) -> bytes:
        """``"MPR1" | u8 base | u8 m | A | S | T_0..T_(b-1) | T_s | f_1..f_N | z_a | z_t | z_v``."""
        return b"".join([MAGIC, struct.pack(">BB", self.base, self.m), self.A, self.S,
                         *self.T, self.Ts, *(sc(x) for x in self.f), sc(self.z_a), sc(self.z_t),
                         sc(self.z_v)])

    @staticmethod
    def size(base: int, m: int) -> int:
        """Encoded size in bytes."""
        return 6 + 32 * (3 + base) + 32 * (m * n_digits(base) + 3)

    @classmethod
    def from_bytes(cls, data: bytes, code: str = "range") -> RangeProof:
        """Decode and validate every point and scalar (:class:`VerificationError` if bad)."""
        if len(data) < 6 or data[:4] != MAGIC:
            raise VerificationError(f"{code}.encoding", "not a range proof (bad magic)")
        base, m = data[4], data[5]
        if base not in BASES or not 1 <= m <= 16:
            raise VerificationError(f"{code}.encoding", f"unsupported base {base} or m {m}")
        if len(data) != cls.size(base, m):
            raise VerificationError(f"{code}.encoding",
                                    f"expected {cls.size(base, m)} bytes, got {len(data)}")
        chunks = [data[o:o + 32] for o in range(6, len(data), 32)]
        pts = [parse_point(c, f"{code}.point[{i}]") for i, c in enumerate(chunks[:3 + base])]
        scal = [parse_scalar(c, f"{code}.scalar[{i}]") for i, c in enumerate(chunks[3 + base:])]
        return cls(base, m, pts[0], pts[1], tuple(pts[2:2 + base]), pts[2 + base],
                   tuple(scal[:-3]), scal[-3], scal[-2], scal[-1])


def _transcripts(context: bytes, base: int, commitments: Sequence[bytes], A: bytes, S: bytes,
                 T: Sequence[bytes], Ts: bytes) -> tuple[int, int, int]:
    head = [context, b"mp-range/v1", struct.pack(">BI", base, len(commitments)),
            *commitments, A, S]
    y = challenge(_CTX_Y, *head)
    w = challenge(_CTX_W, *head)
    x = challenge(_CTX_X, *head, sc(y), sc(w), *T, Ts)
    return y, w, x


@functools.cache
def _elementary(base: int) -> tuple[tuple[int, ...], ...]:
    """``e[a][k]``: coefficient of ``X^k s^(b-k)`` in ``prod_j ((a - j) X + s)``, small ints."""
    rows = []
    for a in range(base):
        coeffs = [1]  # polynomial in X (s factored out), low to high
        for j in range(base):
            c = a - j
            nxt = [0] * (len(coeffs) + 1)
            for k, v in enumerate(coeffs):
                nxt[k] += v
                nxt[k + 1] += v * c
            coeffs = nxt
        rows.append(tuple(coeffs))
    return tuple(rows)


def _poly_digits(a: int, s: int, base: int) -> list[int]:
    """Coefficients (low to high, degree < base) of ``prod_j ((a - j) X + s)``, mod L.

    ``coeff_k = e_k(a) s^(b-k)`` with the integer table :func:`_elementary`; the ``X^b``
    coefficient ``prod_j (a - j)`` is zero exactly when ``a`` is a digit.
    """
    if not 0 <= a < base:
        raise InputError("range.value", "a digit is out of range (value outside [0, 2^64))")
    e = _elementary(base)[a]
    pw = [1] * (base + 1)
    for k in range(1, base + 1):
        pw[k] = pw[k - 1] * s % L
    return [e[k] * pw[base - k] % L for k in range(base)]


def _q_at(f: Sequence[int], x: int, y: int, base: int) -> int:
    """``sum_i y^(i+1) prod_j (f_i - j x)`` mod L (one reduction per digit)."""
    total = 0
    yp = y
    jx = [j * x for j in range(1, base)]
    for fi in f:
        prod = fi
        for v in jx:
            prod *= fi - v
        total += yp * (prod % L)
        yp = yp * y % L
    return total % L


def prove_range(values: Sequence[int], blinds: Sequence[int], commitments: Sequence[bytes],
                context: bytes, nonces: NonceStream, base: int = 16) -> RangeProof:
    """Prove every ``values[j]`` (committed as ``commitments[j]``) is in ``[0, 2^64)``."""
    n = n_digits(base)
    m = len(values)
    if not 1 <= m <= 16 or len(blinds) != m or len(commitments) != m:
        raise InputError("range.values", "need 1..16 values with matching blinds/commitments")
    shift = BASES[base]
    digits: list[int] = []
    for j, v in enumerate(values):
        if not 0 <= v < 2**BITS:
            raise InputError(f"range.values[{j}]", f"{v} is outside [0, 2^64)")
        digits.extend((v >> (shift * i)) & (base - 1) for i in range(n))
    big_n = m * n
    gens = vector_generators(big_n)
    table = generator_multiples(big_n, base)
    h = generator_h()
    alpha, rho = nonces.next(), nonces.next()
    s = [nonces.next() for _ in range(big_n)]
    A = point_sum([mul(alpha, h)] + [table[i][a] for i, a in enumerate(digits) if a])
    S = point_sum([mul(rho, h)] + [mul(si, g) for si, g in zip(s, gens, strict=True)])
    head = [context, b"mp-range/v1", struct.pack(">BI", base, m), *commitments, A, S]
    y = challenge(_CTX_Y, *head)
    w = challenge(_CTX_W, *head)
    # q_k = sum_i y^(i+1) e_k(a_i) s_i^(b-k): one power ladder per digit, one reduction per k
    elem = _elementary(base)
    q = [0] * base
    yp = y
    for a, si in zip(digits, s, strict=True):
        e = elem[a]
        if e[base] != 0:
            raise InputError("range.value", "a digit is out of range")
        pw = si
        for k in range(base - 1, -1, -1):  # s^(b-k) for k = b-1 .. 0
            q[k] += yp * e[k] * pw
            pw = pw * si % L
        yp = yp * y % L
    q = [qk % L for qk in q]
    wp, t_s = 1, 0
    for j in range(m):
        acc, bp = 0, 1
        for i in range(n):
            acc += bp * s[j * n + i]
            bp *= base
        t_s = (t_s + wp * acc) % L
        wp = wp * w % L
    tau = [nonces.next() for _ in range(base)]
    tau_s = nonces.next()
    T = tuple(add(base_mul(qk), mul(tk, h)) for qk, tk in zip(q, tau, strict=True))
    Ts = add(base_mul(t_s), mul(tau_s, h))
    x = challenge(_CTX_X, *head, sc(y), sc(w), *T, Ts)
    if x == 0 or y == 0 or w == 0:  # probability 2^-250; refuse rather than emit a weak proof
        raise InputError("range.challenge", "degenerate challenge")
    f = tuple((a * x + si) % L for a, si in zip(digits, s, strict=True))
    z_a = (alpha * x + rho) % L
    z_t, xp = 0, 1
    for tk in tau:
        z_t = (z_t + tk * xp) % L
        xp = xp * x % L
    wp, gsum = 1, 0
    for gb in blinds:
        gsum = (gsum + wp * gb) % L
        wp = wp * w % L
    z_v = (x * gsum + tau_s) % L
    return RangeProof(base, m, A, S, T, Ts, f, z_a, z_t, z_v)


@dataclass(frozen=True)
class _Terms:
    """One proof's three verification equations as (scalar, point) terms, each == identity."""

    eq_i: list[tuple[int, bytes]]
    gen_f: tuple[int, ...]      # coefficients of G_i in (i): -f_i
    eq_ii: list[tuple[int, bytes]]
    eq_iii: list[tuple[int, bytes]]
    g_ii: int                   # coefficient of G in (ii)
    g_iii: int                  # coefficient of G in (iii)
    h: tuple[int, int, int]     # coefficients of H in (i), (ii), (iii)


def _terms(proof: RangeProof, commitments: Sequence[bytes], context: bytes,
           code: str) -> _Terms:
    base, m = proof.base, proof.m
    n = n_digits(base)
    if len(commitments) != m:
        raise VerificationError(f"{code}.statement", f"proof covers {m} values, "
                                                     f"statement has {len(commitments)}")
    if len(proof.f) != m * n or len(proof.T) != base:
        raise VerificationError(f"{code}.encoding", "wrong number of responses")
    y, w, x = _transcripts(context, base, commitments, proof.A, proof.S, proof.T, proof.Ts)
    if x == 0 or y == 0 or w == 0:
        raise VerificationError(f"{code}.challenge", "degenerate challenge")
    eq_i = [(x, proof.A), (1, proof.S)]
    xp, eq_ii = 1, []
    for t in proof.T:
        eq_ii.append((xp, t))
        xp = xp * x % L
    g_ii = -_q_at(proof.f, x, y, base) % L
    wp, eq_iii, lin = 1, [(1, proof.Ts)], 0
    for j, v in enumerate(commitments):
        eq_iii.append((x * wp % L, v))
        acc, bp = 0, 1
        for i in range(n):
            acc += bp * proof.f[j * n + i]
            bp *= base
        lin = (lin + wp * acc) % L
        wp = wp * w % L
    return _Terms(eq_i, tuple(-fi % L for fi in proof.f), eq_ii, eq_iii, g_ii, -lin % L,
                  (-proof.z_a % L, -proof.z_t % L, -proof.z_v % L))


def verify_range(proof: RangeProof, commitments: Sequence[bytes], context: bytes,
                 code: str = "range") -> None:
    """Check one proof, equation by equation, naming the one that fails."""
    for i, c in enumerate(commitments):
        parse_point(c, f"{code}.commitment[{i}]")
    t = _terms(proof, commitments, context, code)
    h = generator_h()
    gens = vector_generators(len(t.gen_f))
    e1 = point_sum(mul(s, p) for s, p in t.eq_i)
    e1 = add(e1, point_sum(mul(s, g) for s, g in zip(t.gen_f, gens, strict=True)))
    if add(e1, mul(t.h[0], h)) != IDENTITY:
        raise VerificationError(f"{code}.digits_commitment",
                                "responses f do not open x A + S (digit vector binding)")
    e2 = add(point_sum(mul(s, p) for s, p in t.eq_ii), base_mul(t.g_ii))
    if add(e2, mul(t.h[1], h)) != IDENTITY:
        raise VerificationError(f"{code}.digit_range", "digit polynomial check failed: a digit "
                                                       f"is not in [0, {proof.base})")
    e3 = add(point_sum(mul(s, p) for s, p in t.eq_iii), base_mul(t.g_iii))
    if add(e3, mul(t.h[2], h)) != IDENTITY:
        raise VerificationError(f"{code}.value_link",
                                "digits do not recompose to the committed values")


def verify_range_batch(items: Sequence[tuple[RangeProof, Sequence[bytes], bytes]],
                       seed: bytes, code: str = "range") -> None:
    """Check many proofs as one random linear combination of all their equations.

    ``seed`` should be fresh verifier randomness (the shell passes ``secrets.token_bytes``);
    the weights also hash every proof, so they are unpredictable to the prover either way. On
    failure each proof is re-checked alone and the first bad one is reported by position.
    """
    if not items:
        return
    all_terms = []
    for k, (proof, coms, ctx) in enumerate(items):
        for i, c in enumerate(coms):
            parse_point(c, f"{code}[{k}].commitment[{i}]")
        all_terms.append(_terms(proof, coms, ctx, f"{code}[{k}]"))
    digest = challenge(_CTX_BATCH, seed, *(p.to_bytes() for p, _, _ in items))
    max_n = max(len(t.gen_f) for t in all_terms)
    gen_coef = [0] * max_n
    g_coef = 0
    h_coef = 0
    acc = IDENTITY
    for k, t in enumerate(all_terms):
        e = [challenge(_CTX_BATCH, sc(digest), struct.pack(">IB", k, r)) for r in range(3)]
        for s, p in t.eq_i:
            acc = add(acc, mul(e[0] * s, p))
        for i, s in enumerate(t.gen_f):
            gen_coef[i] = (gen_coef[i] + e[0] * s) % L
        for s, p in t.eq_ii:
            acc = add(acc, mul(e[1] * s, p))
        for s, p in t.eq_iii:
            acc = add(acc, mul(e[2] * s, p))
        g_coef = (g_coef + e[1] * t.g_ii + e[2] * t.g_iii) % L
        h_coef = (h_coef + e[0] * t.h[0] + e[1] * t.h[1] + e[2] * t.h[2]) % L
    for s, g in zip(gen_coef, vector_generators(max_n), strict=True):
        acc = add(acc, mul(s, g))
    acc = add(acc, base_mul(g_coef))
    acc = add(acc, mul(h_coef, generator_h()))
    if acc == IDENTITY:
        return
    for k, (proof, coms, ctx) in enumerate(items):
        verify_range(proof, coms, ctx, f"{code}[{k}]")
    raise VerificationError(f"{code}.batch", "batch equation failed but every proof verifies "
                                             "alone (inconsistent batch)")
