// Reports: browse backtest and stress reports and open one. HTML reports open in a sandboxed
// frame (no scripts); Markdown, JSON and CSV are rendered here from their text; images as images.

import { api } from "./api.js";
import { h, replace, table, fmtTime } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

let list = [];
const KIND_TITLES = { backtest: "Backtest reports", stress: "Stress reports", other: "Other reports" };

function sizeText(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(0)} kB` : `${n} B`;
}

function listing() {
  if (!list.length) {
    return h("p", { class: "card" }, "No reports yet. Put backtest and stress reports (HTML, Markdown, JSON, CSV or images) in the reports directory (MARGINPROOF_REPORTS_DIR, default ./reports).");
  }
  const kinds = ["backtest", "stress", "other"].filter((k) => list.some((r) => r.kind === k));
  return h("div", {}, kinds.map((k) => h("section", { class: "card", "aria-labelledby": `rep-${k}` },
    h("h2", { id: `rep-${k}` }, KIND_TITLES[k]),
    table(KIND_TITLES[k], [
      { key: "title", label: "Report", render: (r) => h("a", { href: `#reports/${encodeURIComponent(r.path)}`, class: "report-link" }, r.title) },
      { key: "format", label: "Format", render: (r) => r.format.toUpperCase() },
      { key: "modified_ms", label: "Modified", render: (r) => fmtTime(r.modified_ms) },
      { key: "size_bytes", label: "Size", num: true, render: (r) => sizeText(r.size_bytes) },
      { key: "path", label: "File", render: (r) => h("code", {}, r.path) },
    ], list.filter((r) => r.kind === k), { rowHeader: true, hideCaption: true }))));
}

function jsonView(obj) {
  // a list of flat records is a table; anything else is shown as indented JSON
  if (Array.isArray(obj) && obj.length && obj.every((r) => r && typeof r === "object" && !Array.isArray(r))) {
    const cols = [...new Set(obj.flatMap((r) => Object.keys(r)))];
    return h("div", { class: "table-scroll" }, table("Report data", cols.map((c) => ({ key: c, label: c,
      render: (r) => (typeof r[c] === "object" && r[c] !== null ? JSON.stringify(r[c]) : String(r[c] ?? "")) })), obj.slice(0, 2000)));
  }
  return h("pre", { class: "json" }, JSON.stringify(obj, null, 2));
}

function csvView(text) {
  const lines = text.trim().split(/\r?\n/).slice(0, 2001).map((l) => l.split(","));
  const [head, ...rows] = lines;
  return h("div", { class: "table-scroll" }, h("table", { class: "data" }, h("caption", { class: "visually-hidden" }, "Report data"),
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", { class: /^-?[\d.eE+-]+$/.test(c) ? "num" : null }, c)))))));
}

async function openReport(path) {
  const rep = list.find((r) => r.path === path);
  const viewer = document.getElementById("report-viewer");
  if (!rep) {
    replace(viewer, h("p", { class: "error", role: "alert" }, "No such report (it may have been removed)."));
    return;
  }
  const head = h("div", { class: "report-head" },
    h("h2", { id: "report-title", tabindex: "-1" }, rep.title),
    h("p", { class: "hint" }, `${KIND_TITLES[rep.kind]} · ${rep.format.toUpperCase()} · ${rep.path} · modified ${fmtTime(rep.modified_ms)} · `,
      h("a", { href: rep.url, target: "_blank", rel: "noopener noreferrer" }, "open in a new tab"), " · ",
      h("a", { href: rep.url, download: rep.path.split("/").pop() }, "download")));
  let content;
  if (rep.format === "html") {
    content = h("iframe", { src: rep.url, title: `Report: ${rep.title}`, class: "report-frame", sandbox: "", referrerpolicy: "no-referrer" });
  } else if (rep.format === "png" || rep.format === "svg") {
    content = h("img", { src: rep.url, alt: `Report image: ${rep.title}`, class: "report-img" });
  } else {
    const r = await fetch(rep.url, { cache: "no-store" });
    const text = await r.text();
    if (rep.format === "md") content = renderMarkdown(text, rep.url);
    else if (rep.format === "json") {
      try { content = jsonView(JSON.parse(text)); } catch (e) { content = h("pre", {}, text); }
    } else if (rep.format === "csv") content = csvView(text);
    else content = h("pre", {}, text);
  }
  replace(viewer, h("article", { class: "card report", "aria-labelledby": "report-title" }, head, content));
  document.getElementById("report-title").focus();
}

export async function show(arg, _s) {
  const body = document.getElementById("reports-body");
  replace(body, h("p", {}, "Loading…"));
  const res = await api("/console/api/reports");
  list = res.reports;
  replace(body, listing(), h("div", { id: "report-viewer" }));
  if (arg) await openReport(arg);
}

export function leave() {}
