"""Report figures (matplotlib, Agg backend): each function writes one labelled PNG.

Every figure has a title, axis labels with units, dates on time axes and a legend; sizes are
chosen to stay legible when embedded at 100 % in the HTML report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

ZONE_COLOURS = {"green": "#2e9d4a", "yellow": "#e0b000", "red": "#c8322d"}
DPI = 110


def _usd(x: float, _pos: int | None = None) -> str:
    a = abs(x)
    if a >= 1e9:
        return f"{x / 1e9:.1f}B"
    if a >= 1e6:
        return f"{x / 1e6:.1f}M"
    if a >= 1e3:
        return f"{x / 1e3:.0f}k"
    return f"{x:.0f}"


def _date_axis(ax: Axes) -> None:
    loc = mdates.AutoDateLocator(minticks=4, maxticks=10)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))  # type: ignore[no-untyped-call]


def _symlog_ticks(ax: Axes, lo: float, hi: float) -> None:
    """Readable ticks on a symlog y axis (linear within +-1)."""
    base = [0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
    ticks = sorted({t for t in base if t <= max(hi, 1.0) * 1.01} |
                   {-t for t in base if -t >= min(lo, 0.0) * 1.01})
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def margin_vs_loss(records: pd.DataFrame, portfolio: str, out: Path,
                   horizon_days: int = 1) -> Path:
    """Margin and realised loss of one book over time, exceptions marked."""
    g = records[records["portfolio"] == portfolio].copy()
    g["date"] = pd.to_datetime(g["date"])
    fig, ax = plt.subplots(figsize=(10, 4.2))
    ax.fill_between(g["date"], 0, g["margin_usd"], color="#9ec5e8", alpha=0.5, lw=0)
    ax.plot(g["date"], g["margin_usd"], color="#1f5fa8", lw=1.2, label="margin (IM)")
    ax.plot(g["date"], g["loss_usd"], color="#555555", lw=0.6, alpha=0.8,
            label=f"realised loss over {horizon_days} d (gain < 0)")
    exc = g[g["exception"]]
    ax.scatter(exc["date"], exc["loss_usd"], color="#c8322d", marker="x", s=36, zorder=5,
               label=f"exception: loss > margin ({len(exc)} of {len(g)} days)")
    ax.axhline(0, color="black", lw=0.5)
    ax.yaxis.set_major_formatter(FuncFormatter(_usd))
    ax.set_ylabel("USD")
    ax.set_title(f"{g['model'].iloc[0] if len(g) else ''}: margin vs realised loss - {portfolio}")
    _date_axis(ax)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    ax.grid(alpha=0.3)
    return _save(fig, out)


def traffic_light(summary: pd.DataFrame, out: Path, alpha: float = 0.01) -> Path:
    """Books per Basel zone (last 250 days) by category, with the pooled exception rate."""
    s = summary[summary["n_obs"] > 0]
    zcol = "zone_headline" if "zone_headline" in s else "zone_last_250"
    short = bool((s["n_obs"] < 250).any())
    cats = sorted(s["category"].unique())
    models = sorted(s["model"].unique())
    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.55 * len(cats) * len(models)))
    labels, y = [], 0
    for m in models:
        for c in cats:
            g = s[(s["model"] == m) & (s["category"] == c)]
            if g.empty:
                continue
            left = 0
            for z in ("green", "yellow", "red"):
                n = int((g[zcol] == z).sum())
                if n:
                    ax.barh(y, n, left=left, color=ZONE_COLOURS[z], edgecolor="white")
                    ax.text(left + n / 2, y, str(n), ha="center", va="center", fontsize=8,
                            color="white" if z != "yellow" else "black")
                left += n
            rate = g["n_exceptions"].sum() / max(1, g["n_obs"].sum())
            ax.text(left + 0.2, y, f"  {100 * rate:.2f} % exceptions", va="center", fontsize=8)
            labels.append(f"{m} / {c}")
            y += 1
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("number of books (zone of the whole window: shorter than 250 days)" if short
                  else "number of books (zone of the last 250 days)")
    ax.set_title(f"Basel traffic light per book (expected exception rate {100 * alpha:.1f} %)")
    handles = [Rectangle((0, 0), 1, 1, color=ZONE_COLOURS[z]) for z in ZONE_COLOURS]
    ax.legend(handles, ["green", "yellow", "red"], loc="lower right", fontsize=8)
    xmax = ax.get_xlim()[1]
    ax.set_xlim(0, xmax * 1.35)
    return _save(fig, out)


def margin_to_notional(records: pd.DataFrame, out: Path) -> Path:
    """Median margin / gross notional per category over time (procyclicality at a glance)."""
    r = records.copy()
    r["ratio"] = r["margin_usd"] / r["gross_notional_usd"]
    r["date"] = pd.to_datetime(r["date"])
    fig, ax = plt.subplots(figsize=(10, 4))
    for (m, c), g in r.groupby(["model", "category"]):
        med = g.groupby("date")["ratio"].median()
        ax.plot(med.index, 100 * med.to_numpy(), lw=1.1, label=f"{m} / {c}")
    ax.set_ylabel("median margin / gross notional (%)")
    ax.set_title("Margin level over time (median over books of each category)")
    _date_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, out)


def compare_models(table: pd.DataFrame, out: Path) -> Path:
    """Exception rate against average margin per model and category (the cost/coverage map)."""
    fig, ax = plt.subplots(figsize=(10, 5.5))
    cats = sorted(table["category"].unique())
    markers = dict(zip(cats, "osD^v<>", strict=False))
    colours = plt.get_cmap("tab20")
    models = list(dict.fromkeys(table["model"]))
    for i, m in enumerate(models):
        g = table[table["model"] == m]
        for _, row in g.iterrows():
            ax.scatter(100 * row["avg_margin_to_notional"], 100 * row["exception_rate"],
                       color=colours(i % 20), marker=markers.get(row["category"], "o"), s=60,
                       edgecolor="black", linewidth=0.4)
    handles: list[Artist] = [Rectangle((0, 0), 1, 1, color=colours(i % 20))
                             for i in range(len(models))]
    labels = list(models)
    for c, mk in markers.items():
        handles.append(Line2D([], [], color="grey", marker=mk, ls="", markersize=7))
        labels.append(f"category: {c}")
    handles.append(Line2D([], [], color="#c8322d", ls="--"))
    labels.append("nominal 1 % (99 % margin)")
    ax.axhline(1.0, color="#c8322d", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{x:g}"))
    ax.set_xlabel("average margin / gross notional (%, log scale)  (capital cost)")
    ax.set_ylabel("exception rate (%)  (coverage failure)")
    ax.set_yscale("symlog", linthresh=1.0)
    top = float(100 * table["exception_rate"].max())
    _symlog_ticks(ax, 0.0, top)
    ax.set_ylim(-0.05, max(2.0, top * 1.5))
    ax.set_title("Models side by side: cost vs coverage per portfolio category")
    ax.grid(alpha=0.3, which="both")
    ax.legend(handles, labels, fontsize=7, ncol=2, loc="upper right", framealpha=0.9)
    return _save(fig, out)


def stress_margin_path(hourly: Mapping[str, pd.DataFrame], price: pd.DataFrame,
                       underlying: str, out: Path, title: str) -> Path:
    """Total IM over all accounts per model through a crash, with the index price."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for m, h in hourly.items():
        tot = h.groupby("time")["im_usd"].sum()
        t = pd.to_datetime(tot.index)
        ax.plot(t, tot.to_numpy(), lw=1.4, label=f"{m}: total IM")
        liq = h[h["status"] == "liquidated"].groupby("time").size()
        if len(liq):
            tl = pd.to_datetime(liq.index)
            sizes = 20 + 8 * liq.to_numpy(dtype=np.float64)
            ax.scatter(tl, tot.reindex(liq.index).to_numpy(), marker="v", s=sizes,
                       zorder=5, label=f"{m}: liquidations ({int(liq.sum())})")
    ax.yaxis.set_major_formatter(FuncFormatter(_usd))
    ax.set_ylabel("total initial margin (USD)")
    ax2 = ax.twinx()
    ax2.plot(pd.to_datetime(price["time"]), price[underlying], color="black", lw=0.8,
             alpha=0.6, label=f"{underlying} index (USD, right)")
    ax2.set_ylabel(f"{underlying} (USD)")
    ax2.yaxis.set_major_formatter(FuncFormatter(_usd))
    _date_axis(ax)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left", framealpha=0.9)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, out)


def cascade(results: Sequence[tuple[str, pd.DataFrame]], out: Path, title: str) -> Path:
    """Price with each venue's cascade vs the real path, and cumulative liquidations."""
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True,
                                 gridspec_kw={"height_ratios": [3, 2]})
    first = results[0][1]
    t = pd.to_datetime(first["time"])
    ax.plot(t, first["fundamental_usd"], color="black", lw=1.2, label="real price (no cascade)")
    styles = ["-", "--", ":", "-."]
    for j, (venue, tl) in enumerate(results):
        ls = styles[j % len(styles)]
        ax.plot(pd.to_datetime(tl["time"]), tl["price_usd"], lw=1.4, ls=ls, color=f"C{j}",
                label=f"{venue}: price with its liquidations")
        bx.plot(pd.to_datetime(tl["time"]), tl["cumulative_liquidated_usd"], lw=1.5, ls=ls,
                color=f"C{j}",
                label=f"{venue} (bad debt {_usd(float(tl['bad_debt_usd'].iloc[-1]))} USD)")
    ax.text(0.01, 0.02, "venues with equal rates give identical (overlapping) lines",
            transform=ax.transAxes, fontsize=7, color="#555555")
    ax.set_ylabel("price (USD)")
    ax.yaxis.set_major_formatter(FuncFormatter(_usd))
    ax.legend(fontsize=8)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    bx.set_ylabel("cumulative liquidated notional (USD)")
    bx.yaxis.set_major_formatter(FuncFormatter(_usd))
    bx.legend(fontsize=8, loc="upper left")
    bx.grid(alpha=0.3)
    _date_axis(bx)
    return _save(fig, out)


def shocks(table: pd.DataFrame, out: Path) -> Path:
    """Loss / IM per hypothetical shock and category (median and max)."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    g = table.groupby(["shock", "category"])["loss_over_im"].agg(["median", "max"])
    g = g.reset_index()
    shocks_ = list(dict.fromkeys(table["shock"]))
    cats = sorted(g["category"].unique())
    w = 0.8 / max(1, len(cats))
    for j, c in enumerate(cats):
        sub = g[g["category"] == c].set_index("shock").reindex(shocks_)
        x = np.arange(len(shocks_)) + j * w
        ax.bar(x, sub["max"], width=w, alpha=0.35, color=f"C{j}")
        ax.bar(x, sub["median"], width=w, color=f"C{j}", label=f"{c} (median; pale = max)")
    ax.axhline(1.0, color="#c8322d", ls="--", lw=0.8, label="loss = initial margin")
    ax.set_xticks(np.arange(len(shocks_)) + 0.4 - w / 2, shocks_, fontsize=8)
    ax.set_ylabel("shock loss / initial margin (< 0 = gain)")
    ax.set_yscale("symlog", linthresh=1.0)
    _symlog_ticks(ax, float(np.nanmin(g["median"])), float(np.nanmax(g["max"])))
    ax.set_title("Hypothetical shocks: loss in units of the posted initial margin")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, out)


def smiles(points: pd.DataFrame, curves: pd.DataFrame | None, out: Path, title: str,
           atm_proxy: float | None = None) -> Path:
    """Market mark IVs and fitted smiles of one chain, against log-moneyness."""
    fig, ax = plt.subplots(figsize=(9, 4.8))
    exps = sorted(points["t_years"].unique())
    pick = [exps[i] for i in np.unique(np.linspace(0, len(exps) - 1, min(5, len(exps)))
                                       .round().astype(int))]
    for j, t in enumerate(pick):
        p = points[points["t_years"] == t]
        days = 365.0 * t
        dl = f"{days:.1f}" if days < 2 else f"{days:.0f}"
        ax.scatter(p["k"], 100 * p["market_iv"], s=10, color=f"C{j}",
                   label=f"{dl} d: Deribit mark IV")
        if curves is not None:
            c = curves[curves["t_years"] == t]
            ax.plot(c["k"], 100 * c["svi_iv"], color=f"C{j}", lw=1.2,
                    label=f"{dl} d: SVI fit")
    if atm_proxy is not None:
        ax.axhline(100 * atm_proxy, color="black", ls=":", lw=1,
                   label=f"backtest flat IV (DVOL) {100 * atm_proxy:.0f} %")
    ax.set_xlabel("log-moneyness k = ln(K / F)")
    ax.set_ylabel("implied vol (% a year)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out)


def _usd_sep(x: float, _pos: int | None = None) -> str:
    return f"{x:,.0f}"


def pnl_vs_margin(records: pd.DataFrame, portfolio: str, out: Path,
                  horizon_days: int = 1) -> Path:
    """Realised P&L of one book against minus its margin (and VaR), exceptions marked."""
    g = records[records["portfolio"] == portfolio].copy()
    g["date"] = pd.to_datetime(g["date"])
    pnl = -g["loss_usd"]
    fig, ax = plt.subplots(figsize=(10, 4.4))
    ax.vlines(g["date"], 0, pnl, color="#777777", lw=0.6, alpha=0.8,
              label=f"realised P&L over {horizon_days} d (USD)")
    ax.plot(g["date"], -g["margin_usd"], color="#1f5fa8", lw=1.3,
            label="- margin (posted IM)")
    if "var_usd" in g and np.isfinite(g["var_usd"]).any():
        ax.plot(g["date"], -g["var_usd"], color="#e08a00", lw=0.9, ls="--",
                label="- VaR 99 % of the model's scenarios")
    exc = g[g["exception"]]
    ax.scatter(exc["date"], -exc["loss_usd"], color="#c8322d", marker="x", s=40, zorder=5,
               label=f"exception: loss > margin ({len(exc)} of {len(g)} days)")
    ax.axhline(0, color="black", lw=0.5)
    ax.yaxis.set_major_formatter(FuncFormatter(_usd_sep))
    ax.set_ylabel("USD")
    ax.set_title(f"{g['model'].iloc[0] if len(g) else ''}: realised P&L against margin - "
                 f"{portfolio}")
    _date_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=8,
              frameon=False)
    return _save(fig, out)


def cost_coverage(books: pd.DataFrame, out: Path, title: str,
                  others: pd.DataFrame | None = None, alpha: float = 0.01,
                  kupiec_band: tuple[float, float] | None = None) -> Path:
    """Cost-coverage frontier: exception rate against margin / notional.

    ``books``: one row per book (``category``, ``cost``, ``exception_rate``); ``others``: one
    row per model or candidate (``label``, ``cost``, ``exception_rate``, optional ``chosen``)
    drawn as labelled points. ``kupiec_band``: exception rates Kupiec does not reject.
    """
    fig, ax = plt.subplots(figsize=(10, 5.4))
    if kupiec_band is not None:
        ax.axhspan(100 * kupiec_band[0], 100 * kupiec_band[1], color="#2e9d4a", alpha=0.12,
                   label="exception rates Kupiec does not reject (5 %)")
    ax.axhline(100 * alpha, color="#c8322d", lw=0.8, ls="--",
               label=f"nominal {100 * alpha:g} %")
    cats = list(dict.fromkeys(books["category"])) if len(books) else []
    cmap = plt.get_cmap("tab10")
    for i, c in enumerate(cats):
        g = books[books["category"] == c]
        ax.scatter(100 * g["cost"], 100 * g["exception_rate"], s=28, color=cmap(i % 10),
                   alpha=0.8, edgecolor="white", linewidth=0.4, label=f"book: {c}")
    if others is not None and len(others):
        for _, r in others.iterrows():
            chosen = bool(r.get("chosen", False))
            ax.scatter(100 * r["cost"], 100 * r["exception_rate"], s=90 if chosen else 55,
                       marker="*" if chosen else "D", color="#c8322d" if chosen else "black",
                       zorder=6)
            ax.annotate(str(r["label"]), (100 * r["cost"], 100 * r["exception_rate"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xscale("log")
    xs = 100 * pd.concat([books["cost"], others["cost"] if others is not None else
                          pd.Series(dtype=float)]).dropna()
    if len(xs):
        lo_x, hi_x = float(xs.min()) / 1.3, float(xs.max()) * 1.3
        ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 500)
                 if lo_x <= t <= hi_x]
        ax.set_xlim(lo_x, hi_x)
        ax.set_xticks(ticks, [f"{t:g} %" for t in ticks])
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _p: ""))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _p: f"{y:g} %"))
    ax.set_xlabel("average margin / gross notional (capital cost, log scale)")
    ax.set_ylabel("exception rate: days the loss exceeded the margin")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper right", framealpha=0.9)
    return _save(fig, out)
