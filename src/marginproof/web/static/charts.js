// Charts as inline SVG, drawn by our own small code (no charting library): a line chart for the
// margin history, bars for margin components, and the risk matrix as a heat-map table. Every
// chart has a text alternative (title/description, or the data as a table).

import { h, svg, fmtUsd, fmtNum } from "./dom.js";

function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) { hi = lo + 1; }
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
  const start = Math.floor(lo / step) * step;
  const ticks = [];
  for (let v = start; v <= hi + step * 0.5; v += step) ticks.push(v);
  return ticks;
}

function shortUsd(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(1)}B`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(0)}k`;
  return v.toFixed(0);
}

// series: [{name, cls, points: [[x, y], ...]}]; x numeric (e.g. log sequence number)
export function lineChart({ title, desc, series, xLabel, width = 640, height = 240 }) {
  const m = { l: 56, r: 12, t: 12, b: 34 };
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]).filter((y) => Number.isFinite(y));
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const yt = niceTicks(Math.min(0, ...ys), Math.max(...ys, 1));
  const y0 = yt[0], y1 = yt[yt.length - 1];
  const X = (x) => m.l + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (width - m.l - m.r);
  const Y = (y) => height - m.b - ((y - y0) / (y1 - y0 || 1)) * (height - m.t - m.b);
  const id = `c${Math.random().toString(36).slice(2, 8)}`;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
                            "aria-labelledby": `${id}t ${id}d` },
    svg("title", { id: `${id}t` }, title),
    svg("desc", { id: `${id}d` }, desc));
  for (const t of yt) {
    root.append(svg("line", { x1: m.l, x2: width - m.r, y1: Y(t), y2: Y(t), class: "grid" }),
      svg("text", { x: m.l - 6, y: Y(t) + 4, class: "axis", "text-anchor": "end" }, shortUsd(t)));
  }
  const xt = niceTicks(x0, x1, 6).filter((t) => t >= x0 && t <= x1);
  for (const t of xt) {
    root.append(svg("text", { x: X(t), y: height - m.b + 16, class: "axis", "text-anchor": "middle" },
      Math.round(t).toString()));
  }
  root.append(svg("text", { x: (m.l + width - m.r) / 2, y: height - 4, class: "axis", "text-anchor": "middle" }, xLabel));
  for (const s of series) {
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    if (!pts.length) continue;
    const d = pts.map((p, i) => `${i ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
    root.append(svg("path", { d, class: `line ${s.cls}` }));
    if (pts.length <= 60) {
      for (const p of pts) {
        root.append(svg("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2.5, class: `dot ${s.cls}` },
          svg("title", {}, `${s.name} at ${xLabel} ${p[0]}: ${fmtUsd(p[1])} USD`)));
      }
    }
  }
  const legend = h("ul", { class: "legend" }, series.map((s) =>
    h("li", {}, h("span", { class: `swatch ${s.cls}`, "aria-hidden": "true" }), s.name)));
  return h("figure", { class: "chart-wrap" }, root, legend);
}

// items: [{label, value}] (non-negative parts of a requirement)
export function barChart({ title, items, width = 520 }) {
  const rowH = 26, lw = 200, m = 8;
  const height = items.length * rowH + 2 * m;
  const max = Math.max(...items.map((i) => Math.abs(i.value)), 1);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart bars", role: "img",
                            "aria-label": `${title}: ` + items.map((i) => `${i.label} ${fmtUsd(i.value)} USD`).join(", ") });
  items.forEach((it, k) => {
    const y = m + k * rowH;
    const w = (Math.abs(it.value) / max) * (width - lw - 90);
    root.append(
      svg("text", { x: lw - 8, y: y + 17, class: "axis", "text-anchor": "end" }, it.label),
      svg("rect", { x: lw, y: y + 4, width: Math.max(w, 1), height: rowH - 10,
                    class: it.value < 0 ? "bar neg" : "bar" }),
      svg("text", { x: lw + Math.max(w, 1) + 6, y: y + 17, class: "axis" }, fmtUsd(it.value)));
  });
  return root;
}

// Heat map of a risk matrix {title, row_label, rows, columns, values, binding}: a real table
// (screen readers read the numbers), cells coloured red for losses and green for gains.
export function heatmap(rm) {
  const flat = rm.values.flat().filter((v) => v !== null && Number.isFinite(v));
  const maxAbs = Math.max(...flat.map(Math.abs), 1);
  const b = rm.binding;
  const head = h("tr", {}, h("th", { scope: "col" }, rm.row_label || ""),
    rm.columns.map((c) => h("th", { scope: "col", class: "num" }, c)));
  const body = rm.rows.map((r, i) => h("tr", {}, h("th", { scope: "row" }, r),
    rm.values[i].map((v, j) => {
      const isBinding = b && b.row === i && b.column === j;
      const cell = h("td", { class: `num hm${isBinding ? " binding" : ""}`,
                             title: isBinding ? `binding scenario: ${b.label}` : null },
        v === null ? "–" : fmtNum(v), isBinding ? h("span", { class: "visually-hidden" }, " (binding scenario)") : null);
      if (v !== null) {
        const t = Math.min(Math.abs(v) / maxAbs, 1);
        // at most 55 % colour under dark text: contrast stays above 6:1 (WCAG AA)
        const a = (0.06 + 0.49 * t).toFixed(3);
        cell.style.backgroundColor = v < 0 ? `rgba(200, 30, 45, ${a})` : `rgba(20, 140, 80, ${a})`;
      }
      return cell;
    })));
  return h("div", { class: "heatmap-wrap" },
    h("table", { class: "heatmap" }, h("caption", {}, rm.title), h("thead", {}, head), h("tbody", {}, body)),
    h("p", { class: "hint" }, "Cells: P&L in USD (gains positive). Red: loss, green: gain; the outlined cell binds the requirement."));
}

export function utilBar(u) {
  const frac = u === null ? 1 : Math.min(u, 1.5) / 1.5;
  const bar = h("span", { class: "utilbar", "aria-hidden": "true" }, h("span", {}));
  const fill = bar.firstChild;
  fill.style.width = `${(100 * frac).toFixed(1)}%`;
  fill.classList.add(u === null || u >= 1 ? "hot" : u >= 0.8 ? "warm" : "cool");
  return bar;
}

function pad2(n) {
  return String(n).padStart(2, "0");
}

// Ticks on whole UTC hours (every 1, 2, 3, 4, 6, 12 or 24 h, at most ~8 of them).
function timeTicks(t0, t1) {
  const H = 3600e3;
  const step = [1, 2, 3, 4, 6, 12, 24, 48, 96, 168].map((k) => k * H).find((s) => (t1 - t0) / s <= 8) || 168 * H;
  const ticks = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
  return ticks;
}

// Fan chart against time: shaded quantile bands and median lines.
// times: ISO strings (or ms); bands: [{name, cls, lo: [...], hi: [...]}] drawn first (outer
// first); lines: [{name, cls, values: [...]}]; refs: [{y, label, cls}] horizontal reference
// lines (e.g. zero excess). All arrays are indexed like times.
export function fanChart({ title, desc, times, bands = [], lines = [], refs = [], legend = [],
                           width = 720, height = 290, id = null }) {
  const m = { l: 60, r: 16, t: 14, b: 50 };
  const ts = times.map((t) => (typeof t === "number" ? t : Date.parse(t)));
  const ys = [...bands.flatMap((b) => [...b.lo, ...b.hi]), ...lines.flatMap((l) => l.values),
              ...refs.map((r) => r.y)].filter((y) => Number.isFinite(y));
  const yt = niceTicks(Math.min(0, ...ys), Math.max(...ys, 1));
  const y0 = yt[0], y1 = yt[yt.length - 1];
  const t0 = ts[0], t1 = ts[ts.length - 1];
  const X = (t) => m.l + (t1 === t0 ? 0.5 : (t - t0) / (t1 - t0)) * (width - m.l - m.r);
  const Y = (y) => height - m.b - ((y - y0) / (y1 - y0 || 1)) * (height - m.t - m.b);
  const uid = id || `c${Math.random().toString(36).slice(2, 8)}`;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart fan", role: "img",
                            id, "aria-labelledby": `${uid}t ${uid}d` },
    svg("title", { id: `${uid}t` }, title),
    svg("desc", { id: `${uid}d` }, desc));
  for (const t of yt) {
    root.append(svg("line", { x1: m.l, x2: width - m.r, y1: Y(t), y2: Y(t), class: "grid" }),
      svg("text", { x: m.l - 6, y: Y(t) + 4, class: "axis", "text-anchor": "end" }, shortUsd(t)));
  }
  const xAxis = svg("g", { class: "x-axis" });
  let lastDay = null;
  for (const t of timeTicks(t0, t1)) {
    const d = new Date(t);
    const day = `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`;
    xAxis.append(svg("line", { x1: X(t), x2: X(t), y1: height - m.b, y2: height - m.b + 4, class: "tick" }),
      svg("text", { x: X(t), y: height - m.b + 16, class: "axis tick-label", "text-anchor": "middle",
                    dataset: { t: d.toISOString() } }, `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`));
    if (day !== lastDay) {
      xAxis.append(svg("text", { x: X(t), y: height - m.b + 29, class: "axis", "text-anchor": "middle" }, day.slice(5)));
      lastDay = day;
    }
  }
  root.append(xAxis, svg("line", { x1: m.l, x2: width - m.r, y1: height - m.b, y2: height - m.b, class: "axis-line" }),
    svg("text", { x: (m.l + width - m.r) / 2, y: height - 4, class: "axis", "text-anchor": "middle" }, "time (UTC)"));
  const path = (vals) => vals.map((v, i) => `${i ? "L" : "M"}${X(ts[i]).toFixed(1)},${Y(v).toFixed(1)}`).join("");
  for (const b of bands) {
    const back = b.hi.map((v, i) => [i, v]).reverse();
    const d = `${path(b.lo)}${back.map(([i, v]) => `L${X(ts[i]).toFixed(1)},${Y(v).toFixed(1)}`).join("")}Z`;
    root.append(svg("path", { d, class: `band ${b.cls}` }, svg("title", {}, b.name)));
  }
  for (const r of refs) {
    root.append(svg("line", { x1: m.l, x2: width - m.r, y1: Y(r.y), y2: Y(r.y), class: `ref ${r.cls || ""}` }),
      svg("text", { x: width - m.r - 4, y: Y(r.y) - 5, class: `ref-label ${r.cls || ""}`, "text-anchor": "end" }, r.label));
  }
  for (const l of lines) {
    root.append(svg("path", { d: path(l.values), class: `line ${l.cls}` }));
    root.append(svg("circle", { cx: X(ts[ts.length - 1]), cy: Y(l.values[l.values.length - 1]), r: 3, class: `dot ${l.cls}` },
      svg("title", {}, `${l.name} at the horizon: ${fmtUsd(l.values[l.values.length - 1])} USD`)));
  }
  const leg = h("ul", { class: "legend" }, legend.map((s) =>
    h("li", {}, h("span", { class: `swatch ${s.cls}`, "aria-hidden": "true" }), s.name)));
  return h("figure", { class: "chart-wrap" }, root, leg);
}
