"""Forecast figures and pages: the fan chart (PNG), a self-contained HTML page.

The fan chart has three panels over the forecast hours: the quantile bands of equity and of IM
(the account is called where equity falls below IM), the bands of the excess equity - MM (below
zero: liquidation), and the probability of a margin call and of liquidation by each hour, with
the warning threshold.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from marginproof.forecast.result import ForecastResult  # noqa: E402
from marginproof.reports.figures import _save, _usd  # noqa: E402
from marginproof.reports.html import Report  # noqa: E402

_BANDS = ((0.01, 0.99, 0.12), (0.05, 0.95, 0.22), (0.25, 0.75, 0.38))


def _band(ax: Axes, r: ForecastResult, what: str, colour: str, label: str) -> None:
    lv = r.quantile_levels
    for lo, hi, alpha in _BANDS:
        if lo in lv and hi in lv:
            ax.fill_between(r.hours, r.quantile(what, lo), r.quantile(what, hi), color=colour,
                            alpha=alpha, lw=0,
                            label=f"{label} {lo:.0%}-{hi:.0%}" if lo == 0.05 else None)
    if 0.5 in lv:
        ax.plot(r.hours, r.quantile(what, 0.5), color=colour, lw=1.6, label=f"{label} median")


def fan_chart(r: ForecastResult, path: Path, title: str | None = None) -> Path:
    """Write the fan chart of ``r`` to ``path`` (PNG): equity/IM, excess, probabilities."""
    fig, (a1, a3, a2) = plt.subplots(3, 1, figsize=(9.5, 9.0), sharex=True,
                                     gridspec_kw={"height_ratios": [2.0, 1.3, 1.0]})
    _band(a1, r, "equity", "#1f5fa8", "equity")
    _band(a1, r, "im", "#c8322d", "IM")
    if 0.5 in r.quantile_levels:
        a1.plot(r.hours, r.quantile("mm", 0.5), color="#c8322d", lw=1.0, ls="--",
                label="MM median")
    a1.yaxis.set_major_formatter(FuncFormatter(_usd))
    a1.set_ylabel("USD")
    a1.legend(loc="best", fontsize=8, ncol=2)
    a1.grid(alpha=0.3)
    a1.set_title(title or f"{r.model} margin forecast from {r.market_timestamp:%Y-%m-%d %H:%M} "
                 f"UTC ({r.details.get('n_paths')} paths, seed {r.seed})", fontsize=10)
    _band(a3, r, "excess", "#2e7d32", "excess")
    a3.axhline(0.0, color="#7a1f1f", lw=1.2, label="liquidation (equity = MM)")
    a3.yaxis.set_major_formatter(FuncFormatter(_usd))
    a3.set_ylabel("excess = equity - MM (USD)")
    a3.legend(loc="best", fontsize=8, ncol=2)
    a3.grid(alpha=0.3)
    a2.plot(r.hours, 100 * r.p_call_by, color="#e07b00", lw=1.8, label="P(margin call by hour)")
    a2.plot(r.hours, 100 * r.p_liquidation_by, color="#7a1f1f", lw=1.8,
            label="P(liquidation by hour)")
    thr = float(r.config.get("warn_threshold", 0.05))
    a2.axhline(100 * thr, color="#888", ls=":", lw=1, label=f"warning threshold {thr:.0%}")
    a2.set_ylabel("probability (%)")
    a2.set_xlabel("hours from the market time")
    a2.set_ylim(0, max(5.0, 100 * float(max(r.p_call_by.max(), thr)) * 1.15))
    a2.legend(loc="upper left", fontsize=8)
    a2.grid(alpha=0.3)
    return _save(fig, path)


def summary_rows(r: ForecastResult, every_hours: float = 4.0) -> pd.DataFrame:
    """Table rows at ``every_hours`` (and the first hour): quantiles and probabilities."""
    ks = sorted({0, 1, r.n_steps} | {k for k in range(r.n_steps + 1)
                                      if abs((r.hours[k] / every_hours) % 1) < 1e-9})
    ks = [k for k in ks if k <= r.n_steps]
    lv = r.quantile_levels

    def q(what: str, level: float, k: int) -> float:
        return float(r.quantile(what, level)[k]) if level in lv else float("nan")

    return pd.DataFrame({
        "hour": [float(r.hours[k]) for k in ks],
        "IM p50": [q("im", 0.5, k) for k in ks],
        "IM p95": [q("im", 0.95, k) for k in ks],
        "equity p5": [q("equity", 0.05, k) for k in ks],
        "equity p50": [q("equity", 0.5, k) for k in ks],
        "excess p1": [q("excess", 0.01, k) for k in ks],
        "excess p5": [q("excess", 0.05, k) for k in ks],
        "P(call by)": [float(r.p_call_by[k]) for k in ks],
        "P(liq by)": [float(r.p_liquidation_by[k]) for k in ks],
    })


def levels_frame(r: ForecastResult) -> pd.DataFrame:
    rows = []
    for c in r.call_levels:
        d = c.to_dict()
        rows.append({"underlying": c.underlying, "index": c.index,
                     "call down": d["call_down"], "call down price": d["call_down_price"],
                     "call up": d["call_up"], "call up price": d["call_up_price"],
                     "liquidation down": d["liquidation_down"],
                     "liquidation up": d["liquidation_up"]})
    return pd.DataFrame(rows)


def forecast_page(r: ForecastResult, out: Path, name: str = "forecast") -> tuple[Path, Path]:
    """Write ``<name>.png`` (fan chart) and ``<name>.html`` into ``out``; return both paths."""
    out.mkdir(parents=True, exist_ok=True)
    png = fan_chart(r, out / f"{name}.png")
    rep = Report(f"Margin forecast: {r.model}",
                 f"market {r.market_timestamp.isoformat()}, params {r.params_hash[:12]}, "
                 f"seed {r.seed}, forecast hash {r.forecast_hash[:12]}")
    rep.text(f"Now: IM <b>{r.im0:,.0f}</b> USD, MM {r.mm0:,.0f}, equity {r.equity0:,.0f} "
             f"(status <b>{html.escape(r.status0)}</b>). Over the next "
             f"{r.hours[-1]:g} h: P(margin call) <b>{r.p_call:.2%}</b>, P(liquidation) "
             f"{r.p_liquidation:.2%}; ES{r.es_conf:g} of the excess (equity - MM) at the "
             f"horizon {r.excess_es:,.0f} USD." + (" <b>Warning: above the threshold.</b>"
                                                  if r.warn else ""))
    rep.figure(png, "Fan chart: equity and IM quantile bands, call and liquidation "
                    "probabilities by hour")
    rep.heading("By hour")
    rep.table(summary_rows(r), "{:,.4g}")
    if r.call_levels:
        rep.heading("Call levels (one underlying moves, the others follow their conditional "
                    "expectation)")
        rep.table(levels_frame(r), "{:,.4g}")
    rep.heading("Method")
    d = r.details.get("dynamics", {})
    rep.bullets([f"dynamics: {html.escape(str(r.dynamics))}",
                 f"revaluation: {r.method} (step 0 exact), evaluator "
                 f"{html.escape(str(r.details.get('evaluator')))}",
                 f"one-day vols: {html.escape(str(d.get('sigma_daily')))}; IV: "
                 f"{html.escape(str(d.get('iv_sigma_daily')))}",
                 f"{d.get('rollovers_in_horizon')} UTC rollover(s) in the horizon; vol updates "
                 f"at rollovers: {d.get('vol_updates_at_rollover')}",
                 *[html.escape(str(n)) for n in r.details.get("notes", [])],
                 "method and limits: docs/models/forecast.md"])
    page = rep.write(out / f"{name}.html")
    return png, page


def reliability_figure(bins: pd.DataFrame, path: Path, title: str) -> Path:
    """Reliability diagram: mean predicted P(call) per bin against the realised frequency."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.4))
    a1.plot([0, 1], [0, 1], color="#888", ls=":", lw=1, label="perfect calibration")
    ok = bins["n"] > 0
    b = bins[ok]
    lo = np.clip(b["realised"] - b["ci_low"], 0, None)
    hi = np.clip(b["ci_high"] - b["realised"], 0, None)
    a1.errorbar(b["predicted"], b["realised"], yerr=[lo, hi], fmt="o", color="#1f5fa8",
                capsize=3, label="bins (95 % Wilson interval)")
    a1.set_xlabel("predicted P(call within 24 h)")
    a1.set_ylabel("realised frequency")
    a1.set_xlim(0, 1)
    a1.set_ylim(0, 1)
    a1.legend(fontsize=8, loc="upper left")
    a1.grid(alpha=0.3)
    a1.set_title(title, fontsize=10)
    a2.bar(np.arange(len(bins)), bins["n"], color="#1f5fa8")
    a2.set_xticks(np.arange(len(bins)), bins["bin"], rotation=45, fontsize=7, ha="right")
    a2.set_ylabel("forecasts")
    a2.set_yscale("log")
    a2.set_title("forecasts per bin", fontsize=10)
    return _save(fig, path)


def backtest_page(res: object, out: Path, name: str = "forecast_backtest") -> tuple[Path, Path]:
    """Reliability diagram and scores of a forecast backtest
    (:class:`~marginproof.forecast.backtest.ForecastBacktestResult`): ``<name>.png``,
    ``<name>.html`` and ``<name>_records.csv`` in ``out``."""
    from marginproof.forecast.backtest import ForecastBacktestResult

    assert isinstance(res, ForecastBacktestResult)
    out.mkdir(parents=True, exist_ok=True)
    s = res.summary()
    png = reliability_figure(res.reliability, out / f"{name}.png",
                             f"{s['model']}: predicted vs realised calls, {s['n_forecasts']} "
                             "forecasts")
    res.records.to_csv(out / f"{name}_records.csv", index=False)
    rep = Report(f"Forecast backtest: {s['model']}",
                 f"origins {s['first_origin']} .. {s['last_origin']} ({s['n_origins']}), "
                 f"{s['n_paths']} paths, horizon {s['horizon_hours']} h")
    rep.text(f"{s['n_forecasts']} forecasts (origin x book x collateral level), "
             f"{s['n_calls']} realised calls (base rate {s['base_rate']:.3f}). Brier score "
             f"<b>{s['brier']:.4f}</b> (constant base-rate forecast {s['brier_base_rate']:.4f},"
             f" skill {s['brier_skill']:.3f}); share of realised calls warned at the origin "
             f"(P >= {s['warn_threshold']:g}, at least 1 h ahead) <b>{s['warned_share']:.3f}"
             f"</b>; mean first hour in call {s['mean_first_call_hour']:.1f}.")
    rep.figure(png, "Reliability diagram (95 % Wilson intervals) and forecasts per bin")
    rep.heading("Reliability")
    rep.table(res.reliability, "{:,.4g}")
    by = res.records.groupby("category").agg(n=("p", "size"), predicted=("p", "mean"),
                                            realised=("called", "mean")).reset_index()
    rep.heading("By portfolio category")
    rep.table(by, "{:,.4g}")
    rep.heading("Method and limits")
    rep.bullets([f"levels of equity / IM now: {s['levels']}; portfolio sets {s['sets']}",
                 "one forecast per (origin, book); the levels are read off the same paths "
                 "(USDC has no haircut)",
                 "realised: model.margin at every hour on the path's market, equity = equity "
                 "now + P&L of the held legs; no funding",
                 "triples are not independent (shared market path, nested levels)",
                 "method and limits: docs/models/forecast.md"])
    page = rep.write(out / f"{name}.html")
    return png, page
