"""Implied-vol throughput: compiled array path vs the old per-option library loop (issue 9).

``iv_throughput(n)`` returns the figures; ``iv_report_lines(res)`` formats them. Run alone:
``python benchmarks/_iv_bench.py [n]``. Both paths are timed in the same run on the same book,
min of several repeats; the naive loop (``implied_vol_one`` = py_lets_be_rational as plain
Python, once per option, which is what ``implied_vol`` did before) is timed on a sample.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _roofline import best_time  # noqa: E402

from marginproof.pricing import _iv_kernel as ivk  # noqa: E402
from marginproof.pricing import black76_price, implied_vol  # noqa: E402
from marginproof.pricing.implied_vol import implied_vol_reference  # noqa: E402

TARGET = 1e6  # options/s on 2 cores (issue 9)


def _book(n: int, seed: int = 9) -> tuple[np.ndarray, ...]:
    """A crypto option book: BTC-like forwards, K/F in [e^-1, e^1], 1 day to 2 years."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(20_000.0, 120_000.0, n)
    k = f * np.exp(rng.uniform(-1.0, 1.0, n))
    t = np.exp(rng.uniform(np.log(1 / 365), np.log(2.0), n))
    s = rng.uniform(0.2, 1.5, n)
    c = rng.random(n) < 0.5
    d = np.exp(-0.05 * t)
    p = black76_price(f, k, t, s, c, d)
    return p, f, k, t, c, d


def iv_throughput(n: int) -> dict[str, float]:
    """Options/s of ``implied_vol`` (compiled, parallel) vs the per-option library loop.

    Parameters
    ----------
    n : number of options in the array call (the naive loop runs on min(n, 10_000)).

    Returns
    -------
    dict
        ``iv_options_per_s`` (public API, incl. broadcasting/copies), ``iv_naive_options_per_s``,
        ``iv_speedup_vs_naive``, plus ``iv_kernel_options_per_s`` (kernel alone),
        ``iv_max_rel_diff_vs_naive`` on the sample, ``iv_nan_fraction``, ``iv_threads``,
        ``iv_options`` and ``load_avg_1min``.
    """
    import numba

    p, f, k, t, c, d = _book(n)
    t_api = best_time(lambda: implied_vol(p, f, k, t, c, d), repeats=5)
    out = np.empty(n)
    t_kernel = best_time(lambda: ivk.iv_array(p, f, k, t, c, d, out), repeats=5)
    m = min(n, 10_000)
    sample = tuple(a[:m] for a in (p, f, k, t, c, d))
    t_naive = best_time(lambda: implied_vol_reference(*sample), repeats=2)
    fast = implied_vol(*sample)
    ref = implied_vol_reference(*sample)
    both = np.isfinite(fast) & np.isfinite(ref)
    same_nan = bool(np.array_equal(np.isnan(fast), np.isnan(ref)))
    max_rel = float(np.max(np.abs(fast[both] - ref[both]) / ref[both])) if both.any() else 0.0
    naive_rate = m / t_naive
    loadavg = Path("/proc/loadavg")
    return {
        "iv_options": float(n),
        "iv_options_per_s": n / t_api,
        "iv_kernel_options_per_s": n / t_kernel,
        "iv_naive_options_per_s": naive_rate,
        "iv_speedup_vs_naive": (n / t_api) / naive_rate,
        "iv_max_rel_diff_vs_naive": max_rel if same_nan else float("inf"),
        "iv_nan_fraction": float(np.isnan(out).mean()),
        "iv_threads": float(numba.get_num_threads()),
        "load_avg_1min": float(loadavg.read_text().split()[0]) if loadavg.exists()
        else float("nan"),
    }


def iv_report_lines(res: dict[str, float]) -> list[str]:
    """Human-readable lines for :func:`iv_throughput`'s result."""
    return [
        "Implied vol (Jaeckel 'Let's be rational', py_lets_be_rational), float64",
        f"  options                     {int(res['iv_options']):,} "
        f"({int(res['iv_threads'])} threads, load {res['load_avg_1min']:.2f})",
        f"  compiled, public API        {res['iv_options_per_s']:.3e} options/s "
        f"(target {TARGET:.0e}: {'met' if res['iv_options_per_s'] >= TARGET else 'MISSED'})",
        f"  compiled kernel alone       {res['iv_kernel_options_per_s']:.3e} options/s",
        f"  naive per-option loop       {res['iv_naive_options_per_s']:.3e} options/s "
        f"-> {res['iv_speedup_vs_naive']:.0f}x",
        f"  max rel diff vs naive       {res['iv_max_rel_diff_vs_naive']:.1e} "
        f"(NaN pattern {'equal' if np.isfinite(res['iv_max_rel_diff_vs_naive']) else 'DIFFERS'})",
    ]


if __name__ == "__main__":
    nn = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(f"loadavg: {Path('/proc/loadavg').read_text().strip()}" if os.path.exists(
        "/proc/loadavg") else "")
    print("\n".join(iv_report_lines(iv_throughput(nn))))
