// A deliberately small Markdown renderer for reports (headings, paragraphs, lists, code blocks,
// pipe tables, images, links, bold/italic/code). It builds DOM nodes only (no HTML from the
// file is ever interpreted), so a report cannot inject script.

import { h } from "./dom.js";

function inline(text, base) {
  const out = [];
  const re = /(!\[([^\]]*)\]\(([^)\s]+)\)|\[([^\]]+)\]\(([^)\s]+)\)|`([^`]+)`|\*\*([^*]+)\*\*|\*([^*]+)\*|_([^_]+)_)/g;
  let last = 0;
  let m;
  while ((m = re.exec(text)) !== null) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[2] !== undefined) out.push(h("img", { src: resolveUrl(m[3], base), alt: m[2], loading: "lazy" }));
    else if (m[4] !== undefined) {
      const href = resolveUrl(m[5], base);
      out.push(h("a", { href, rel: "noopener noreferrer", target: "_blank" }, m[4]));
    } else if (m[6] !== undefined) out.push(h("code", {}, m[6]));
    else if (m[7] !== undefined) out.push(h("strong", {}, m[7]));
    else if (m[8] !== undefined) out.push(h("em", {}, m[8]));
    else if (m[9] !== undefined) out.push(h("em", {}, m[9]));
    last = re.lastIndex;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function resolveUrl(u, base) {
  if (/^(https?:|mailto:|#)/i.test(u)) return u;
  if (/^[a-z]+:/i.test(u)) return "#"; // javascript:, data: and friends are dropped
  return new URL(u, new URL(base, location.href)).toString();
}

function cells(line) {
  return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
}

export function renderMarkdown(src, base) {
  const lines = src.replace(/\r\n?/g, "\n").split("\n");
  const root = h("div", { class: "markdown" });
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (/^```/.test(line)) {
      const buf = [];
      i++;
      while (i < lines.length && !/^```/.test(lines[i])) buf.push(lines[i++]);
      i++;
      root.append(h("pre", {}, h("code", {}, buf.join("\n"))));
      continue;
    }
    const hm = /^(#{1,6})\s+(.*)$/.exec(line);
    if (hm) {
      const level = Math.min(hm[1].length + 2, 6); // the page already has h1/h2
      root.append(h(`h${level}`, {}, inline(hm[2], base)));
      i++;
      continue;
    }
    if (/^\s*\|/.test(line) && i + 1 < lines.length && /^\s*\|?\s*:?-{2,}/.test(lines[i + 1])) {
      const head = cells(line);
      i += 2;
      const rows = [];
      while (i < lines.length && /^\s*\|/.test(lines[i])) rows.push(cells(lines[i++]));
      root.append(h("table", { class: "data" }, h("caption", { class: "visually-hidden" }, "Report table"),
        h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, inline(c, base))))),
        h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", { class: /^-?[\d,.]+%?$/.test(c) ? "num" : null }, inline(c, base))))))));
      continue;
    }
    if (/^\s*([-*]|\d+\.)\s+/.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const list = h(ordered ? "ol" : "ul", {});
      while (i < lines.length && /^\s*([-*]|\d+\.)\s+/.test(lines[i])) {
        list.append(h("li", {}, inline(lines[i].replace(/^\s*([-*]|\d+\.)\s+/, ""), base)));
        i++;
      }
      root.append(list);
      continue;
    }
    if (!line.trim()) { i++; continue; }
    const para = [];
    while (i < lines.length && lines[i].trim() && !/^(#{1,6}\s|```|\s*\|)/.test(lines[i]) &&
           !/^\s*([-*]|\d+\.)\s+/.test(lines[i])) para.push(lines[i++]);
    root.append(h("p", {}, inline(para.join(" "), base)));
  }
  return root;
}
