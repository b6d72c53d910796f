// Small DOM and formatting helpers. Text always goes in through textContent (never innerHTML),
// so data from the server cannot inject markup.

export function h(tag, attrs = {}, ...children) {
  const ns = attrs && attrs.svg ? "http://www.w3.org/2000/svg" : null;
  const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false || k === "svg") continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

export function svg(tag, attrs = {}, ...children) {
  return h(tag, { ...attrs, svg: true }, ...children);
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

const usd0 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const num2 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
const num4 = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 4 });

export function fmtUsd(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return usd0.format(x);
}

export function fmtNum(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return Math.abs(x) >= 1000 ? usd0.format(x) : Math.abs(x) >= 1 ? num2.format(x) : num4.format(x);
}

export function fmtPct(x) {
  if (x === null || x === undefined) return "∞";
  return `${(100 * x).toFixed(1)} %`;
}

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "–";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function statusText(s) {
  return { ok: "OK", margin_call: "Margin call", liquidation: "Liquidation" }[s] || s;
}

// Why a held margin is held, cut to a badge-sized text (the full reason goes in the title)
export function heldText(reason, max = 48) {
  const r = reason || "held";
  return r.length <= max ? r : `${r.slice(0, max - 1)}…`;
}

export function statusBadge(s, held, reason) {
  const why = held && reason ? reason : null;
  return h("span", { class: `badge status-${s}`, title: why }, statusText(s),
    held ? (why ? ` (held: ${heldText(why)})` : " (held)") : null);
}

// A sortable, captioned data table: columns [{key, label, num, render}]
export function table(caption, columns, rows, opts = {}) {
  const thead = h("thead", {}, h("tr", {}, columns.map((c) =>
    h("th", { scope: "col", class: c.num ? "num" : null }, c.label))));
  const tbody = h("tbody", {}, rows.map((r, i) => h("tr", opts.rowAttrs ? opts.rowAttrs(r, i) : {},
    columns.map((c, j) => {
      const v = c.render ? c.render(r, i) : r[c.key];
      const cell = j === 0 && opts.rowHeader ? "th" : "td";
      return h(cell, { class: c.num ? "num" : null, scope: cell === "th" ? "row" : null }, v);
    }))));
  return h("table", { class: opts.class || "data" },
    h("caption", { class: opts.hideCaption ? "visually-hidden" : null }, caption), thead, tbody);
}

export function announce(msg) {
  const live = document.getElementById("live");
  if (!live) return;
  live.textContent = "";
  // a fresh text node is announced even when the message repeats
  setTimeout(() => { live.textContent = msg; }, 30);
}
