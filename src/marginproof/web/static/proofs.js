// Proofs: the latest signed epoch record, the user's own inclusion proof (download) and its
// verification in this browser (verify.js: WebCrypto SHA-256 and Ed25519, no server help).

import { api } from "./api.js";
import { h, replace, table, announce } from "./dom.js";
import { verifyProofFile } from "./verify.js";

let latest = null;
let proofBytes = null;
let proofName = null;
let store = null;
const TRUST = "marginproof.trustedKeyId";

function atoms(v, scale) {
  const s = BigInt(v).toString().padStart(scale + 1, "0");
  const whole = s.slice(0, s.length - scale).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return scale ? `${whole}.${s.slice(s.length - scale).replace(/0+$/, "") || "0"}` : whole;
}

function solvencyPanel(rec) {
  const sv = rec.solvency;
  const hd = rec.header;
  const scales = Object.fromEntries(hd.assets.map((a) => [a.symbol, Number(a.scale)]));
  const qs = Number(hd.quote.scale);
  const rows = sv.assets.map((r) => ({
    asset: r.asset,
    reserves: r.reserves === null ? "not attested" : atoms(r.reserves, scales[r.asset]),
    liabilities: atoms(r.liabilities, scales[r.asset]),
    net: r.net === null ? "–" : (r.net.startsWith("-") ? "−" + atoms(r.net.slice(1), scales[r.asset]) : atoms(r.net, scales[r.asset])),
    verdict: r.verdict,
  }));
  const st = sv.stress;
  const cov = st.covered_by_insurance_fund;
  return h("section", { class: "card", "aria-labelledby": "sv-title", id: "solvency" },
    h("h2", { id: "sv-title" }, "Solvency"),
    h("p", {}, "Reserves are on-chain balances whose addresses signed this epoch's block (EIP-191, BIP-322, Bitcoin message signing) plus custodian statements; liabilities are the tree's totals of what the venue owes its users. Re-check it from the published files with ",
      h("code", {}, "marginproof verify-solvency"), "."),
    table("Reserves against liabilities, per asset", [
      { key: "asset", label: "Asset" }, { key: "reserves", label: "Reserves", num: true },
      { key: "liabilities", label: "Liabilities", num: true }, { key: "net", label: "Net", num: true },
      { key: "verdict", label: "Verdict", render: (r) => h("strong", { class: `verdict-${r.verdict}`, dataset: { verdict: r.verdict } }, r.verdict) },
    ], rows, { rowHeader: true }),
    h("p", { id: "stress-line" }, `Stress (${st.scenario}): accounts would owe ${atoms(st.shortfall, qs)} ${hd.quote.symbol} beyond their collateral; insurance fund `,
      sv.insurance_fund_quote === null ? "not stated" : `${atoms(sv.insurance_fund_quote, qs)} ${hd.quote.symbol}`,
      cov === null ? "." : (cov ? " — covered." : " — NOT covered.")));
}

function epochPanel() {
  const rec = latest.record.record;
  const hd = rec.header;
  const scale = Number(hd.quote.scale);
  const totals = hd.fields.slice(0, 6).map((f, i) => ({ field: f, atoms: rec.root.sums[i], value: atoms(rec.root.sums[i], scale) }));
  return h("section", { class: "card", "aria-labelledby": "ep-title" },
    h("h2", { id: "ep-title" }, `Epoch ${latest.epoch}`),
    h("dl", { class: "kv" },
      h("dt", {}, "Venue"), h("dd", {}, hd.venue),
      h("dt", {}, "Market time"), h("dd", {}, hd.market_timestamp),
      h("dt", {}, "Cut"), h("dd", {}, hd.cut_timestamp),
      h("dt", {}, "Model"), h("dd", {}, `${hd.model.name || ""} · params ${String(hd.params_hash).slice(0, 16)}…`),
      h("dt", {}, "Root hash"), h("dd", {}, h("code", { class: "hash", id: "root-hash" }, rec.root.hash)),
      h("dt", {}, "Signed by key"), h("dd", {}, h("code", { class: "hash" }, latest.record.key_id)),
      h("dt", {}, "Epoch log"), h("dd", {}, latest.sth ? `${latest.sth.sth.size} record(s), tree head ${latest.sth.sth.root.slice(0, 16)}…` : "no tree head"),
      h("dt", {}, "Epochs"), h("dd", {}, latest.epochs.join(", "))),
    table(`Totals over every account (${hd.quote.symbol})`, [
      { key: "field", label: "Field" }, { key: "value", label: hd.quote.symbol, num: true },
      { key: "atoms", label: "Atoms", num: true, render: (r) => h("code", {}, r.atoms) },
    ], totals, { rowHeader: true }));
}

async function download() {
  const msg = document.getElementById("pf-dl-msg");
  msg.textContent = "";
  const own = store.me.scope === "account";
  const acc = own ? store.me.account_id : document.getElementById("pf-account").value.trim();
  if (!acc) { msg.textContent = "Name the account."; return; }
  try {
    const q = own ? "" : `?account_id=${encodeURIComponent(acc)}`;
    const r = await api(`/console/api/proofs/mine${q}`, { raw: true });
    proofBytes = new Uint8Array(await r.arrayBuffer());
    proofName = `proof-${acc}-epoch-${latest.epoch}.json`;
    const url = URL.createObjectURL(new Blob([proofBytes], { type: "application/json" }));
    const a = h("a", { href: url, download: proofName, id: "pf-file-link" }, `Save ${proofName}`);
    replace(msg, `Proof of ${acc} for epoch ${latest.epoch} received (${proofBytes.length} bytes). `, a,
      " — it holds your private nonce: keep it to yourself.");
    a.click();
    document.getElementById("pf-source-dl").checked = true;
  } catch (e) {
    msg.textContent = `Could not get the proof: ${e.message}`;
  }
}

function parseStatement(text) {
  const out = {};
  for (const part of text.split(/[\s,;]+/).filter(Boolean)) {
    const m = /^([a-z]+(?::[A-Z0-9]+)?)=(\d+)$/.exec(part);
    if (!m) throw new Error(`"${part}" is not FIELD=ATOMS`);
    out[m[1]] = m[2];
  }
  return out;
}

async function verify(ev) {
  ev.preventDefault();
  const out = document.getElementById("pf-result");
  replace(out, h("p", {}, "Verifying…"));
  let bytes = null;
  const file = document.getElementById("pf-file").files[0];
  if (document.getElementById("pf-source-file").checked) {
    if (!file) { replace(out, h("p", { class: "error" }, "Choose a proof file.")); return; }
    bytes = new Uint8Array(await file.arrayBuffer());
  } else {
    if (!proofBytes) { replace(out, h("p", { class: "error" }, "Download your proof first, or choose a file.")); return; }
    bytes = proofBytes;
  }
  let expected = null;
  try {
    expected = parseStatement(document.getElementById("pf-expect").value);
  } catch (e) {
    replace(out, h("p", { class: "error" }, e.message));
    return;
  }
  const trust = document.getElementById("pf-trust").value.trim() || null;
  const t0 = performance.now();
  // an account key checks the tag against its own id: someone else's proof is rejected
  const accountId = store.me.scope === "account" ? store.me.account_id : null;
  const res = await verifyProofFile(bytes, { signedRecord: latest.record, keyEntries: latest.keys, trust,
                                              accountId, expected });
  const ms = performance.now() - t0;
  const scale = Number(latest.record.record.header.quote.scale);
  if (res.valid) {
    if (trust) localStorage.setItem(TRUST, trust);
    const vals = Object.entries(res.values).slice(0, 4).map(([k, v]) => ({ field: k, value: atoms(v, scale), atoms: v }));
    replace(out, h("div", { class: "verdict ok", id: "pf-verdict", dataset: { valid: "true" } },
      h("p", { class: "verdict-line" }, h("strong", {}, "VALID"), ` — your account${res.accountId ? ` ${res.accountId}` : ""} is leaf ${res.index} of epoch ${res.epoch}, and the path leads to the signed root (${ms.toFixed(0)} ms, in this browser).`),
      table("Your leaf", [{ key: "field", label: "Field" }, { key: "value", label: latest.record.record.header.quote.symbol, num: true }, { key: "atoms", label: "Atoms", num: true }], vals, { rowHeader: true }),
      h("p", {}, "Checked:"),
      h("ul", { class: "checks-done" }, res.checks.map((c) => h("li", {}, c))),
      trust ? null : h("p", { class: "hint" }, "The operator keys came from this server. Pin the venue's genesis key id (published out of band) above to check them against it."),
      res.anchored === false ? h("p", { class: "hint", id: "pf-unanchored" }, "Not anchored: without a pinned genesis key id, a server that forged every file would pass this check.") : null,
      res.privacySkipped ? h("p", { class: "hint" }, "Privacy openings and range proofs (check 7) are not checked in the browser: run marginproof verify-account for them.") : null));
    announce(`Proof valid: leaf ${res.index} of epoch ${res.epoch}`);
  } else {
    replace(out, h("div", { class: "verdict bad", id: "pf-verdict", dataset: { valid: "false", code: res.code } },
      h("p", { class: "verdict-line" }, h("strong", {}, "REJECTED"), " ", h("code", {}, res.code), `: ${res.message}`)));
    announce(`Proof rejected: ${res.code}`);
  }
}

function proofPanel() {
  const own = store.me.scope === "account";
  return h("section", { class: "card", "aria-labelledby": "pf-title" },
    h("h2", { id: "pf-title" }, "Your inclusion proof"),
    h("p", {}, "Your proof shows that your margin and collateral are one leaf of the epoch's Merkle sum tree whose root the operator signed. Download it, then verify it here: the check runs in this browser with the same rules as ",
      h("code", {}, "marginproof verify-account"), ", so you need not trust this server."),
    own ? null : h("p", {}, h("label", { for: "pf-account" }, "Account (operator)"), h("input", { id: "pf-account", autocomplete: "off" })),
    h("p", {}, h("button", { type: "button", id: "pf-download", onclick: download }, own ? "Download my proof" : "Download the account's proof")),
    h("p", { id: "pf-dl-msg", role: "status" }),
    h("form", { id: "pf-verify", onsubmit: verify, novalidate: true },
      h("fieldset", {}, h("legend", {}, "Proof to verify"),
        h("div", { class: "radio-row" }, h("input", { type: "radio", name: "pf-source", id: "pf-source-dl", checked: true }),
          h("label", { for: "pf-source-dl" }, "The proof just downloaded")),
        h("div", { class: "radio-row" }, h("input", { type: "radio", name: "pf-source", id: "pf-source-file" }),
          h("label", { for: "pf-source-file" }, "A proof file (JSON or binary)")),
        h("label", { for: "pf-file" }, "Proof file"),
        h("input", { type: "file", id: "pf-file", accept: ".json,.bin,application/json,application/octet-stream",
                     onchange: () => { document.getElementById("pf-source-file").checked = true; } })),
      h("label", { for: "pf-trust" }, "Trusted operator key id (optional, 64 hex)"),
      h("input", { id: "pf-trust", autocomplete: "off", spellcheck: "false", value: localStorage.getItem(TRUST) || "" }),
      h("label", { for: "pf-expect" }, "Your own statement (optional): FIELD=ATOMS, e.g. im=1234500000 mm=987600000"),
      h("input", { id: "pf-expect", autocomplete: "off", spellcheck: "false" }),
      h("p", {}, h("button", { type: "submit", id: "pf-verify-btn" }, "Verify in this browser"))),
    h("div", { id: "pf-result", role: "status" }));
}

export async function show(_arg, s) {
  store = s;
  const body = document.getElementById("proofs-body");
  if (!s.me.proofs) {
    replace(body, h("p", { class: "card" }, "This service has no proofs directory configured (MARGINPROOF_PROOFS_DIR)."));
    return;
  }
  replace(body, h("p", {}, "Loading…"));
  try {
    latest = await api("/console/api/proofs/latest");
  } catch (e) {
    replace(body, h("p", { class: "card" }, e.status === 404 ? "No epoch has been proven yet." : `Error: ${e.message}`));
    return;
  }
  replace(body, epochPanel(), solvencyPanel(latest.record.record), proofPanel());
}

export function leave() {}
