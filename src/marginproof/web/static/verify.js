// In-browser verifier of an inclusion proof: the same checks, in the same order and with the
// same failure codes, as marginproof.proofs.verify.verify_account (docs/proofs.md, spec section
// 10, checks 1-6) and `marginproof verify-account`, so a user need not trust the server that
// served the proof. SHA-256 and Ed25519 come from WebCrypto (a secure context: https or
// localhost). Check 7 (privacy openings and range proofs, ristretto255) is not done here.

const te = new TextEncoder();

export class VerificationError extends Error {
  constructor(code, detail) {
    super(`${code}: ${detail}`);
    this.code = code;
    this.detail = detail;
  }
}

// a structural problem in evidence is a rejection "<field>.encoding" (as the CLI reports it)
function bad(field, detail) {
  return new VerificationError(`${field}.encoding`, detail);
}

export const PREFIX = { SUM_LEAF: 0x10, SUM_NODE_V1: 0x11, ACCOUNT: 0x13, HEADER: 0x14 };
export const U64_MAX = (1n << 64n) - 1n;
export const MAX_DEPTH = 32;
export const MAX_FIELDS = 64;
export const CTX_LOG_ENTRY = "marginproof/v1/log-entry";
export const CTX_EPOCH_RECORD = "marginproof/v1/epoch-record";

export const FORMATS = {
  v1: { version: 1, spec: "marginproof/proofs/v1", sumBytes: 16, nodePrefix: 0x11,
        proofType: "mp-inclusion/v1", magic: "MPI1" },
  v2: { version: 2, spec: "marginproof/proofs/v2", sumBytes: 8, nodePrefix: 0x19,
        proofType: "mp-inclusion/v2", magic: "MPI2" },
};
for (const f of Object.values(FORMATS)) f.sumMax = (1n << BigInt(8 * f.sumBytes)) - 1n;
const BY_TYPE = Object.fromEntries(Object.values(FORMATS).map((f) => [f.proofType, f]));
const BY_SPEC = Object.fromEntries(Object.values(FORMATS).map((f) => [f.spec, f]));
const BY_MAGIC = Object.fromEntries(Object.values(FORMATS).map((f) => [f.magic, f]));

// -- bytes ------------------------------------------------------------------------------------
export function concat(...parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

export function hex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export function fromHex(s) {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

function beBytes(x, width) {
  const out = new Uint8Array(width);
  let v = BigInt(x);
  for (let i = width - 1; i >= 0; i--) { out[i] = Number(v & 0xffn); v >>= 8n; }
  return out;
}

function readBE(b, off, width) {
  let v = 0n;
  for (let i = 0; i < width; i++) v = (v << 8n) | BigInt(b[off + i]);
  return v;
}

function subtle() {
  const s = globalThis.crypto && globalThis.crypto.subtle;
  if (!s) {
    throw new VerificationError("browser.crypto", "WebCrypto is unavailable: open the console " +
      "over https or on localhost (a secure context) to verify proofs");
  }
  return s;
}

export async function sha256(...parts) {
  return new Uint8Array(await subtle().digest("SHA-256", concat(...parts)));
}

// -- canonical JSON (marginproof.proofs.encoding.canon) -----------------------------------------
function cmpCodePoints(a, b) {
  const A = Array.from(a, (c) => c.codePointAt(0));
  const B = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(A.length, B.length); i++) if (A[i] !== B[i]) return A[i] - B[i];
  return A.length - B.length;
}

export function canon(obj) {
  if (obj === null) return "null";
  if (typeof obj === "boolean") return obj ? "true" : "false";
  if (typeof obj === "string") return JSON.stringify(obj);
  if (typeof obj === "bigint") return JSON.stringify(obj.toString());
  if (Array.isArray(obj)) return "[" + obj.map(canon).join(",") + "]";
  if (typeof obj === "object") {
    const keys = Object.keys(obj).sort(cmpCodePoints);
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + canon(obj[k])).join(",") + "}";
  }
  throw new Error(`unsupported type ${typeof obj} in canonical JSON`);
}

export function canonBytes(obj) {
  return te.encode(canon(obj));
}

function decodeUtf8(bytes, what) {
  try {
    // ignoreBOM keeps a byte-order mark in the text, where the parser rejects it (as Python does)
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (e) {
    throw bad(what, "not UTF-8");
  }
}

// Strict JSON (encoding.parse_strict): valid UTF-8, no duplicate keys, no bare numbers, no
// NaN/Infinity; any whitespace and key order. JSON.parse cannot see duplicate keys, so this is
// a small recursive-descent parser (strings are decoded by JSON.parse, one token at a time).
export function parseStrict(data, what) {
  const text = typeof data === "string" ? data : decodeUtf8(data, what);
  let i = 0;
  const WS = " \t\n\r";
  const ws = () => { while (i < text.length && WS.includes(text[i])) i++; };
  const fail = (msg) => { throw bad(what, `malformed JSON: ${msg} at character ${i}`); };
  function str() {
    const start = i++;
    while (i < text.length && text[i] !== '"') {
      const c = text.charCodeAt(i);
      if (c < 0x20) fail("control character in string");
      i += text[i] === "\\" ? 2 : 1;
    }
    if (i >= text.length) fail("unterminated string");
    i++;
    try {
      return JSON.parse(text.slice(start, i));
    } catch (e) {
      return fail("invalid string escape");
    }
  }
  function value(depth) {
    if (depth > 200) fail("nesting too deep");
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = {};
      const seen = new Set();
      ws();
      if (text[i] === "}") { i++; return obj; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a key");
        const k = str();
        if (seen.has(k)) fail(`duplicate key ${JSON.stringify(k)}`);
        seen.add(k);
        ws();
        if (text[i++] !== ":") fail("expected ':'");
        Object.defineProperty(obj, k, { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i] === ",") { i++; continue; }
        if (text[i] === "}") { i++; return obj; }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr = [];
      ws();
      if (text[i] === "]") { i++; return arr; }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ",") { i++; continue; }
        if (text[i] === "]") { i++; return arr; }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    for (const [lit, v] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(lit, i)) { i += lit.length; return v; }
    }
    if (c !== undefined && /[-0-9NI]/.test(c)) throw bad(what, "bare numbers, NaN and Infinity are not allowed (numbers are decimal strings)");
    return fail("unexpected character");
  }
  const out = value(0);
  ws();
  if (i !== text.length) fail("extra data");
  return out;
}

// Canonical JSON (parameters, log entries, epoch records): strict, and the bytes re-encode
// identically (one trailing newline allowed).
export function parseCanonical(data, what) {
  let bytes = typeof data === "string" ? te.encode(data) : data;
  if (bytes.length && bytes[bytes.length - 1] === 0x0a) bytes = bytes.subarray(0, -1);
  const text = decodeUtf8(bytes, what);
  const obj = parseStrict(text, what);
  if (canon(obj) !== text) {
    throw bad(what, "not canonical JSON (sorted keys, no whitespace, strings only)");
  }
  return obj;
}

// -- field parsers (encoding.parse_uint, parse_hex32, parse_hex) ----------------------------
const UINT = /^(0|[1-9][0-9]*)$/;
const HEX64 = /^[0-9a-f]{64}$/;
const HEX = /^(?:[0-9a-f]{2})*$/;

export function parseUint(s, field, max = U64_MAX) {
  if (typeof s !== "string" || !UINT.test(s)) {
    throw bad(field, `must be a canonical unsigned integer string, got ${JSON.stringify(s)}`);
  }
  const v = BigInt(s);
  if (v > max) throw bad(field, `${s} exceeds ${max}`);
  return v;
}

export function parseHex32(s, field) {
  if (typeof s !== "string" || !HEX64.test(s)) throw bad(field, "must be 64 lowercase hex characters");
  return fromHex(s);
}

function parseHexN(s, field, n) {
  if (typeof s !== "string" || !HEX.test(s)) throw bad(field, "must be lowercase hex");
  const b = fromHex(s);
  if (n !== undefined && b.length !== n) throw bad(field, `must be ${n} bytes, got ${b.length}`);
  return b;
}

function isObj(x) {
  return x !== null && typeof x === "object" && !Array.isArray(x);
}

function sameKeys(obj, keys) {
  const k = Object.keys(obj);
  return k.length === keys.length && keys.every((x) => Object.prototype.hasOwnProperty.call(obj, x));
}

// -- signatures (marginproof.proofs.signing) ----------------------------------------------------
async function signingInput(context, message) {
  return concat(te.encode(context), new Uint8Array([0]), await sha256(message));
}

export async function keyId(raw) {
  return hex(await sha256(raw));
}

export async function verifySignature(raw, context, message, sig, code) {
  if (sig.length !== 64) throw new VerificationError(code, `signature must be 64 bytes, got ${sig.length}`);
  let ok = false;
  try {
    const key = await subtle().importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
    ok = await subtle().verify({ name: "Ed25519" }, key, sig, await signingInput(context, message));
  } catch (e) {
    if (e instanceof VerificationError) throw e;
    ok = false;
  }
  if (!ok) throw new VerificationError(code, "Ed25519 signature does not verify under the key");
}

// -- published keys (marginproof.storage.proofstore.published_keys) -----------------------------------
const KINDS = ["market", "positions", "balances", "params", "keys", "cut"];
const ROLES = ["operator", "source"];

function parseEntry(obj, where) {
  if (!isObj(obj) || !sameKeys(obj, ["kind", "seq", "source", "body", "sig"])) {
    throw bad(where, "entry must have exactly kind, seq, source, body, sig");
  }
  if (!KINDS.includes(obj.kind)) throw bad(`${where}.kind`, `unknown kind ${JSON.stringify(obj.kind)}`);
  if (!isObj(obj.body)) throw bad(`${where}.body`, "must be an object");
  parseUint(obj.seq, `${where}.seq`);
  parseHex32(obj.source, `${where}.source`);
  const sig = parseHexN(obj.sig, `${where}.sig`, 64);
  return { kind: obj.kind, seq: obj.seq, source: obj.source, body: obj.body, sig };
}

async function parseKeys(body, where) {
  const keys = body.keys;
  if (!sameKeys(body, ["keys"]) || !Array.isArray(keys) || !keys.length) {
    throw bad(`${where}.body`, "keys entry needs a non-empty 'keys' list");
  }
  const out = new Map();
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const p = `${where}.body.keys[${i}]`;
    if (!isObj(k) || !sameKeys(k, ["role", "key_id", "public_key"])) {
      throw bad(p, "must be {role, key_id, public_key}");
    }
    if (!ROLES.includes(k.role)) throw bad(`${p}.role`, `must be one of ${ROLES}`);
    const raw = parseHexN(k.public_key, `${p}.public_key`, 32);
    if ((await keyId(raw)) !== k.key_id) throw bad(`${p}.key_id`, "is not SHA-256 of the public key");
    if (out.has(k.key_id)) throw bad(`${p}.key_id`, "listed twice");
    out.set(k.key_id, [k.role, raw]);
  }
  if (![...out.values()].some(([r]) => r === "operator")) {
    throw bad(`${where}.body`, "a keys entry must list at least one operator key");
  }
  return out;
}

// Operator keys from the published keys entries: the genesis entry is self-signed (and, with
// `trust`, must be that key id); each rotation is signed by an operator key of the previous set.
export async function publishedKeys(entries, trust = null) {
  if (!entries || !entries.length) throw bad("keys", "no keys entries");
  let current = new Map();
  const ops = new Map();
  for (let i = 0; i < entries.length; i++) {
    const e = parseEntry(entries[i], `keys[${i}]`);
    if (e.kind !== "keys") throw bad(`keys[${i}]`, "keys.jsonl may only hold keys entries");
    const keys = await parseKeys(e.body, `keys[${i}]`);
    const signer = (i === 0 ? keys : current).get(e.source);
    if (!signer || signer[0] !== "operator") {
      throw new VerificationError(`keys[${i}].source`, "keys entry not signed by an operator key of the previous key set");
    }
    if (i === 0 && trust && e.source !== trust) {
      throw new VerificationError("keys[0].source", "genesis key is not the trusted key");
    }
    const unsigned = { kind: e.kind, seq: e.seq, source: e.source, body: e.body };
    await verifySignature(signer[1], CTX_LOG_ENTRY, canonBytes(unsigned), e.sig, `keys[${i}].sig`);
    current = keys;
    for (const [kid, [role, raw]] of keys) if (role === "operator") ops.set(kid, raw);
  }
  return ops;
}

// -- epoch record (marginproof.proofs.records) ---------------------------------------------------
const HEADER_KEYS = ["spec", "epoch", "venue", "quote", "assets", "fields", "depth", "input_log",
  "params_hash", "market_hash", "market_timestamp", "cut_timestamp", "model", "engine",
  "prev_record_hash", "recalibration", "stress", "reserves_hash"];
const BASE_FIELDS = ["assets", "liabs", "im", "mm", "short", "stress"];

function shapeObj(v, keys, where) {
  if (!isObj(v) || !sameKeys(v, keys)) throw bad(where, `must be an object with exactly ${[...keys].sort()}`);
  for (const k of keys) if (typeof v[k] !== "string") throw bad(`${where}.${k}`, "must be a string");
  return v;
}

// Every nested header object has exactly its keys, with string values (records.py).
function checkHeaderShapes(h, where) {
  for (const k of ["venue", "params_hash", "market_hash", "market_timestamp", "cut_timestamp"]) {
    if (typeof h[k] !== "string") throw bad(`${where}.${k}`, "must be a string");
  }
  parseHex32(h.params_hash, `${where}.params_hash`);
  parseHex32(h.market_hash, `${where}.market_hash`);
  shapeObj(h.quote, ["symbol", "scale"], `${where}.quote`);
  if (!Array.isArray(h.assets)) throw bad(`${where}.assets`, "must be a list");
  h.assets.forEach((a, i) => shapeObj(a, ["symbol", "scale"], `${where}.assets[${i}]`));
  const il = shapeObj(h.input_log, ["size", "root"], `${where}.input_log`);
  parseUint(il.size, `${where}.input_log.size`);
  parseHex32(il.root, `${where}.input_log.root`);
  shapeObj(h.model, ["name", "params_hash", "version"], `${where}.model`);
  const eng = shapeObj(h.engine, ["version", "lock_hash"], `${where}.engine`);
  parseHex32(eng.lock_hash, `${where}.engine.lock_hash`);
  if (h.recalibration !== null) {
    const rc = shapeObj(h.recalibration, ["seq", "leaf_hash"], `${where}.recalibration`);
    parseUint(rc.seq, `${where}.recalibration.seq`);
    parseHex32(rc.leaf_hash, `${where}.recalibration.leaf_hash`);
  }
  const st = h.stress;
  if (!isObj(st) || !sameKeys(st, ["scenarios", "worst"]) || !Array.isArray(st.scenarios) ||
      !st.scenarios.length || !st.scenarios.every((x) => typeof x === "string") ||
      !st.scenarios.includes(st.worst)) {
    throw bad(`${where}.stress`, "must be {scenarios: [names], worst: one of them}");
  }
  if (h.reserves_hash !== null) parseHex32(h.reserves_hash, `${where}.reserves_hash`);
}

// The solvency section agrees with the tree's totals (records.check_solvency, same codes).
function checkSolvency(view, where) {
  const sv = view.signed.record.solvency;
  const attested = view.header.reserves_hash !== null;
  const keys = ["assets", "stress", "insurance_fund_quote", "max_block_age_s"].concat(
    attested ? ["reserves_hash", "custodian_keys", "blocks", "insurance_fund"] : []);
  if (!isObj(sv) || !sameKeys(sv, keys)) throw bad(`${where}.solvency`, `must be an object with exactly ${[...keys].sort()}`);
  const totals = Object.fromEntries(view.fields.map((f, i) => [f, view.rootSums[i]]));
  const want = view.fields.some((f) => f.startsWith("cr:")) ? view.header.assets.map((a) => a.symbol) : [];
  if (!Array.isArray(sv.assets) || canon(sv.assets.map((r) => r.asset)) !== canon(want)) {
    throw new VerificationError(`${where}.solvency.assets`, "assets differ from the header's");
  }
  for (const r of sv.assets) {
    const p = `${where}.solvency.${r.asset}`;
    if (!isObj(r) || !sameKeys(r, ["asset", "liabilities", "receivables", "reserves", "net", "verdict"])) throw bad(p, "bad row");
    if (parseUint(r.liabilities, `${p}.liabilities`, 2n ** 128n) !== totals[`cr:${r.asset}`]) {
      throw new VerificationError(`${p}.liabilities`, `liabilities differ from the tree's total cr:${r.asset}`);
    }
    if (parseUint(r.receivables, `${p}.receivables`, 2n ** 128n) !== totals[`db:${r.asset}`]) {
      throw new VerificationError(`${p}.receivables`, `differ from the tree's total db:${r.asset}`);
    }
    if (!attested) {
      if (r.reserves !== null || r.net !== null || r.verdict !== "not-attested") {
        throw new VerificationError(`${p}.verdict`, "reserves stated without attestation");
      }
      continue;
    }
    const res = parseUint(r.reserves, `${p}.reserves`, 2n ** 128n);
    const liab = BigInt(r.liabilities);
    if (typeof r.net !== "string" || !/^-?\d+$/.test(r.net) || BigInt(r.net) !== res - liab) {
      throw new VerificationError(`${p}.net`, "net is not reserves - liabilities");
    }
    if (r.verdict !== (res >= liab ? "solvent" : "insolvent")) {
      throw new VerificationError(`${p}.verdict`, `verdict ${r.verdict} does not follow from reserves ${res} vs liabilities ${liab}`);
    }
  }
  const st = sv.stress;
  if (!isObj(st) || !sameKeys(st, ["scenario", "shortfall", "by_scenario", "covered_by_insurance_fund"])) {
    throw bad(`${where}.solvency.stress`, "bad stress section");
  }
  if (st.scenario !== view.header.stress.worst) throw new VerificationError(`${where}.solvency.stress.scenario`, "not the header's worst");
  if (parseUint(st.shortfall, `${where}.solvency.stress.shortfall`, 2n ** 128n) !== totals.stress) {
    throw new VerificationError(`${where}.solvency.stress.shortfall`, "differs from the tree's total stress field");
  }
  const fund = sv.insurance_fund_quote;
  const cov = st.covered_by_insurance_fund;
  if ((fund === null) !== (cov === null) || (fund !== null && cov !== (BigInt(fund) >= totals.stress))) {
    throw new VerificationError(`${where}.solvency.stress.covered_by_insurance_fund`, "coverage does not follow from the insurance fund");
  }
}

function checkPrivacyShape(p, where) {
  const keys = ["scheme", "fields", "range_base", "root", "root_commitments", "blind_totals", "bundle_hash"];
  if (!isObj(p) || !sameKeys(p, keys)) throw bad(where, `must be an object with exactly ${[...keys].sort()}`);
  if (canon(p.fields) !== canon(["assets", "liabs", "mm"]) || p.scheme !== "mp-pedersen/v2") {
    throw bad(where, "unsupported privacy scheme or fields");
  }
  parseUint(p.range_base, `${where}.range_base`, 16n);
  parseHex32(p.root, `${where}.root`);
  parseHex32(p.bundle_hash, `${where}.bundle_hash`);
  for (const k of ["root_commitments", "blind_totals"]) {
    if (!Array.isArray(p[k]) || p[k].length !== 3) throw bad(`${where}.${k}`, "must list three values");
    p[k].forEach((x, i) => parseHex32(x, `${where}.${k}[${i}]`));
  }
}

export async function parseRecord(signed, where = "record") {
  if (!isObj(signed) || !sameKeys(signed, ["record", "sig", "key_id"])) {
    throw bad(where, "must be {record, sig, key_id}");
  }
  const rec = signed.record;
  const rk = isObj(rec) ? Object.keys(rec) : [];
  if (!isObj(rec) || !["header", "root", "totals", "solvency"].every((k) => rk.includes(k)) ||
      !rk.every((k) => ["header", "root", "totals", "solvency", "privacy"].includes(k))) {
    throw bad(`${where}.record`, "must be {header, root, totals, solvency[, privacy]}");
  }
  const h = rec.header;
  if (!isObj(h) || !sameKeys(h, HEADER_KEYS)) {
    throw bad(`${where}.record.header`, `must have exactly ${[...HEADER_KEYS].sort()}`);
  }
  const fmt = BY_SPEC[h.spec];
  if (!fmt) throw bad(`${where}.record.header.spec`, `unknown format ${JSON.stringify(h.spec)}`);
  const epoch = parseUint(h.epoch, `${where}.record.header.epoch`);
  const depth = Number(parseUint(h.depth, `${where}.record.header.depth`, BigInt(MAX_DEPTH)));
  const fields = h.fields;
  if (!Array.isArray(fields) || !fields.length || !fields.every((f) => typeof f === "string")) {
    throw bad(`${where}.record.header.fields`, "must be a non-empty list of names");
  }
  if (new Set(fields).size !== fields.length ||
      fields.slice(0, BASE_FIELDS.length).join(",") !== BASE_FIELDS.join(",")) {
    throw bad(`${where}.record.header.fields`, `must start with ${BASE_FIELDS.join(", ")} and be unique`);
  }
  const root = rec.root;
  if (!isObj(root) || !sameKeys(root, ["hash", "sums"])) throw bad(`${where}.record.root`, "must be {hash, sums}");
  const rootHash = parseHex32(root.hash, `${where}.record.root.hash`);
  if (!Array.isArray(root.sums) || root.sums.length !== fields.length) {
    throw bad(`${where}.record.root.sums`, `must list ${fields.length} sums`);
  }
  const rootSums = root.sums.map((s, i) => parseUint(s, `${where}.record.root.sums[${i}]`, fmt.sumMax));
  if (!isObj(rec.totals) || !sameKeys(rec.totals, fields)) {
    throw bad(`${where}.record.totals`, "must be an object with exactly the header's fields");
  }
  for (const [f, v] of Object.entries(rec.totals)) parseUint(v, `${where}.record.totals.${f}`, fmt.sumMax);
  parseHex32(signed.key_id, `${where}.key_id`);
  parseHexN(signed.sig, `${where}.sig`, 64);
  if (h.prev_record_hash !== null) parseHex32(h.prev_record_hash, `${where}.record.header.prev_record_hash`);
  checkHeaderShapes(h, `${where}.record.header`);
  const privacy = rec.privacy === undefined ? null : rec.privacy;
  if (privacy !== null) checkPrivacyShape(privacy, `${where}.record.privacy`);
  const hdrHash = await sha256(new Uint8Array([PREFIX.HEADER]), canonBytes(h));
  return { signed, header: h, hdrHash, fmt, epoch, depth, fields, rootHash, rootSums, privacy };
}

// Structure, signature under a trusted operator key, and totals == root.sums.
export async function verifyRecord(signed, operatorKeys, where = "record") {
  const view = await parseRecord(signed, where);
  const raw = operatorKeys.get(signed.key_id);
  if (!raw) throw new VerificationError(`${where}.key_id`, "record signed by a key that is not a trusted operator key");
  await verifySignature(raw, CTX_EPOCH_RECORD, canonBytes(signed.record), fromHex(signed.sig), `${where}.sig`);
  const expect = Object.fromEntries(view.fields.map((f, i) => [f, view.rootSums[i].toString()]));
  if (canon(signed.record.totals) !== canon(expect)) {
    throw new VerificationError(`${where}.totals`, "published totals differ from the root sums");
  }
  checkSolvency(view, where);
  return view;
}

// The user's private privacy section: exact keys at every level (privacy.parse_private_section).
function checkPrivateSection(p, depth, where) {
  if (!isObj(p) || !sameKeys(p, ["blinds", "range_proof", "path"])) throw bad(where, "must be an object with exactly blinds, range_proof, path");
  if (!Array.isArray(p.blinds) || p.blinds.length !== 3) throw bad(`${where}.blinds`, "must list 3 scalars");
  p.blinds.forEach((x, i) => parseHex32(x, `${where}.blinds[${i}]`));
  if (typeof p.range_proof !== "string" || !/^([0-9a-f]{2})*$/.test(p.range_proof)) throw bad(`${where}.range_proof`, "must be hex");
  if (!Array.isArray(p.path) || p.path.length !== Number(depth)) throw bad(`${where}.path`, `must list ${depth} nodes`);
  p.path.forEach((n, lv) => {
    if (!isObj(n) || !sameKeys(n, ["h", "c"])) throw bad(`${where}.path[${lv}]`, "must be an object with exactly h, c");
    parseHex32(n.h, `${where}.path[${lv}].h`);
    if (!Array.isArray(n.c) || n.c.length !== 3) throw bad(`${where}.path[${lv}].c`, "must list 3 commitments");
    n.c.forEach((x, k) => {
      if (parseHex32(x, `${where}.path[${lv}].c[${k}]`)[31] & 0x80) throw bad(`${where}.path[${lv}].c[${k}]`, "non-canonical ristretto255 encoding (top bit set)");
    });
  });
}

// -- inclusion proof (marginproof.proofs.inclusion) -----------------------------------------------
function shapeChecks(f, d, where) {
  if (!(f >= 1 && f <= MAX_FIELDS)) throw bad(`${where}.values`, `field count ${f} not in [1, ${MAX_FIELDS}]`);
  if (!(d >= 0 && d <= MAX_DEPTH)) throw bad(`${where}.depth`, `depth ${d} not in [0, ${MAX_DEPTH}]`);
}

export function proofFromJsonObj(obj) {
  const where = "proof";
  if (!isObj(obj)) throw bad(where, "must be a JSON object");
  const allowed = ["type", "epoch", "hdr_hash", "depth", "index", "leaf", "path", "account_id", "nonce", "privacy"];
  const extra = Object.keys(obj).filter((k) => !allowed.includes(k));
  if (extra.length) throw bad(where, `unknown keys ${JSON.stringify(extra.sort())}`);
  const fmt = BY_TYPE[obj.type];
  if (!fmt) throw bad(`${where}.type`, `unknown proof type ${JSON.stringify(obj.type)}`);
  const epoch = parseUint(obj.epoch, `${where}.epoch`);
  const hdrHash = parseHex32(obj.hdr_hash, `${where}.hdr_hash`);
  const depth = Number(parseUint(obj.depth, `${where}.depth`, BigInt(MAX_DEPTH)));
  const leaf = obj.leaf;
  if (!isObj(leaf) || !sameKeys(leaf, ["tag", "values"])) throw bad(`${where}.leaf`, "must be {tag, values}");
  const tag = parseHex32(leaf.tag, `${where}.leaf.tag`);
  if (!Array.isArray(leaf.values)) throw bad(`${where}.leaf.values`, "must be a list");
  const values = leaf.values.map((v, i) => parseUint(v, `${where}.leaf.values[${i}]`));
  const f = values.length;
  shapeChecks(f, depth, where);
  const index = parseUint(obj.index, `${where}.index`);
  if (!Array.isArray(obj.path)) throw bad(`${where}.path`, "must be a list");
  const path = obj.path.map((node, i) => {
    const p = `${where}.path[${i}]`;
    if (!isObj(node) || !sameKeys(node, ["h", "s"])) throw bad(p, "must be {h, s}");
    const h = parseHex32(node.h, `${p}.h`);
    if (!Array.isArray(node.s) || node.s.length !== f) throw bad(`${p}.s`, `must list ${f} sums`);
    return [h, node.s.map((x, j) => parseUint(x, `${p}.s[${j}]`, fmt.sumMax))];
  });
  if (obj.account_id !== undefined && typeof obj.account_id !== "string") {
    throw bad(`${where}.account_id`, "must be a string");
  }
  const nonce = obj.nonce !== undefined ? parseHex32(obj.nonce, `${where}.nonce`) : null;
  if (obj.privacy !== undefined) checkPrivateSection(obj.privacy, depth, `${where}.privacy`);
  return { fmt, epoch, hdrHash, depth, index, tag, values, path,
           accountId: obj.account_id === undefined ? null : obj.account_id, nonce,
           privacy: obj.privacy === undefined ? null : obj.privacy };
}

export function proofFromBinary(data) {
  const where = "proof";
  if (data.length < 88) throw bad(where, `binary proof too short (${data.length} bytes)`);
  const magic = String.fromCharCode(...data.subarray(0, 4));
  const fmt = BY_MAGIC[magic];
  if (!fmt) throw bad(where, `unknown magic ${JSON.stringify(magic)}`);
  const [version, f, d, wb] = data.subarray(4, 8);
  if (version !== fmt.version) throw bad(where, `version byte ${version} does not match magic`);
  if (wb !== (fmt.version === 1 ? 0 : fmt.sumBytes)) throw bad(where, `sum-width byte ${wb} invalid for format v${fmt.version}`);
  shapeChecks(f, d, where);
  const size = 88 + 8 * f + d * (32 + fmt.sumBytes * f);
  if (data.length !== size) {
    throw bad(where, `expected ${size} bytes for F=${f}, D=${d}, got ${data.length} (no trailing bytes allowed)`);
  }
  const epoch = readBE(data, 8, 8);
  const hdrHash = data.slice(16, 48);
  const index = readBE(data, 48, 8);
  const tag = data.slice(56, 88);
  const values = [];
  for (let j = 0; j < f; j++) values.push(readBE(data, 88 + 8 * j, 8));
  let off = 88 + 8 * f;
  const w = fmt.sumBytes;
  const path = [];
  for (let i = 0; i < d; i++) {
    const h = data.slice(off, off + 32);
    off += 32;
    const s = [];
    for (let j = 0; j < f; j++) s.push(readBE(data, off + j * w, w));
    off += w * f;
    path.push([h, s]);
  }
  return { fmt, epoch, hdrHash, depth: d, index, tag, values, path, accountId: null, nonce: null,
           privacy: null };
}

// Binary if it starts with a known magic, strict JSON (any formatting) otherwise.
export function loadProofBytes(data) {
  const magic = String.fromCharCode(...data.subarray(0, 4));
  if (BY_MAGIC[magic]) return proofFromBinary(data);
  return proofFromJsonObj(parseStrict(data, "proof"));
}

// Walk the path from the leaf to the root; every value and sum range-checked.
export async function recomputeRoot(p) {
  const fmt = p.fmt;
  const f = p.values.length;
  if (p.path.length !== p.depth) throw new VerificationError("proof.depth", `path has ${p.path.length} nodes, depth is ${p.depth}`);
  if (!(p.index >= 0n && p.index < (1n << BigInt(p.depth)))) {
    throw new VerificationError("proof.index", `index ${p.index} outside [0, 2^${p.depth})`);
  }
  if (p.tag.length !== 32 || p.hdrHash.length !== 32) throw new VerificationError("proof.width", "tag and hdr_hash must be 32 bytes");
  p.values.forEach((v, j) => {
    if (v < 0n || v > U64_MAX) throw new VerificationError(`leaf.values[${j}].range`, `value ${v} outside [0, 2^64)`);
  });
  const limit = fmt.sumMax;
  const w = fmt.sumBytes;
  const enc = (xs) => concat(...xs.map((x) => beBytes(x, w)));
  let h = await sha256(new Uint8Array([PREFIX.SUM_LEAF]), p.hdrHash, p.tag,
    concat(...p.values.map((v) => beBytes(v, 8))));
  let s = p.values;
  let idx = p.index;
  const prefix = new Uint8Array([fmt.nodePrefix]);
  for (let level = 0; level < p.path.length; level++) {
    const [sh, ss] = p.path[level];
    if (sh.length !== 32) throw new VerificationError(`path[${level}].h`, "sibling hash must be 32 bytes");
    if (ss.length !== f) throw new VerificationError(`path[${level}].s`, `expected ${f} sums, got ${ss.length}`);
    if (ss.some((x) => x < 0n || x > limit)) {
      throw new VerificationError(`path[${level}].sums.range`, `sibling sum outside [0, 2^${8 * w})`);
    }
    const pre = (idx & 1n) ? concat(prefix, sh, enc(ss), h, enc(s)) : concat(prefix, h, enc(s), sh, enc(ss));
    s = s.map((a, j) => a + ss[j]);
    if (s.some((x) => x > limit)) {
      throw new VerificationError(`path[${level}].sums.overflow`, `parent sum exceeds 2^${8 * w}-1`);
    }
    h = await sha256(pre);
    idx >>= 1n;
  }
  return [h, s];
}

// -- the user's checks (marginproof.proofs.verify) -------------------------------------------------
export async function tagFromNonce(nonce, accountId) {
  const b = te.encode(accountId);
  return sha256(new Uint8Array([PREFIX.ACCOUNT]), nonce, beBytes(b.length, 4), b);
}

export function checkLeafRules(values, fields) {
  const v = Object.fromEntries(fields.map((f, i) => [f, values[i]]));
  const need = v.mm + v.liabs;
  const want = need > v.assets ? need - v.assets : 0n;
  if (v.short !== want) {
    throw new VerificationError("leaf.short", `short ${v.short} != max(0, mm ${v.mm} + liabs ${v.liabs} - assets ${v.assets})`);
  }
  for (const f of fields) {
    if (f.startsWith("cr:")) {
      const d = "db:" + f.slice(3);
      if ((v[d] || 0n) > 0n && v[f] > 0n) throw new VerificationError("leaf.cr_db", `both ${f} and ${d} are positive`);
    }
  }
}

export async function verifyAccount(proof, { record, accountId = null, nonce = null, expected = null }) {
  const checks = [];
  if (proof.fmt !== record.fmt) {
    throw new VerificationError("proof.format", `proof is ${proof.fmt.proofType}, record uses ${record.fmt.spec}`);
  }
  if (proof.epoch !== record.epoch) {
    throw new VerificationError("proof.epoch", `proof is for epoch ${proof.epoch}, record for epoch ${record.epoch} (cross-epoch replay)`);
  }
  if (!equalBytes(proof.hdrHash, record.hdrHash)) throw new VerificationError("proof.hdr_hash", "proof is bound to another epoch header");
  if (proof.depth !== record.depth) throw new VerificationError("proof.depth", `depth ${proof.depth} != header depth ${record.depth}`);
  if (proof.values.length !== record.fields.length) {
    throw new VerificationError("proof.fields", `${proof.values.length} values, header has ${record.fields.length} fields`);
  }
  const fields = record.fields;
  checks.push("record signature, key and totals");
  checks.push("proof epoch, header hash, depth, field count");
  const aid = accountId !== null ? accountId : proof.accountId;
  const nn = nonce !== null ? nonce : proof.nonce;
  if (aid !== null && nn === null) {
    throw new VerificationError("leaf.nonce", `no nonce for account '${aid}': the leaf's tag cannot be checked (it may be someone else's)`);
  }
  if (nn !== null && aid === null) {
    throw new VerificationError("leaf.account_id", "a nonce without an account id: the leaf's tag cannot be checked");
  }
  if (aid !== null && nn !== null) {
    if (!equalBytes(await tagFromNonce(nn, aid), proof.tag)) {
      throw new VerificationError("leaf.tag", "tag is not SHA-256(0x13 || nonce || len || id) of this account (someone else's leaf)");
    }
    checks.push("tag recomputed from id and nonce");
  }
  checkLeafRules(proof.values, fields);
  checks.push("short rule, cr/db exclusivity");
  if (expected && Object.keys(expected).length) {
    for (const [name, want] of Object.entries(expected)) {
      if (!fields.includes(name)) throw new VerificationError("leaf.values", `no field ${JSON.stringify(name)} in this epoch`);
      const got = proof.values[fields.indexOf(name)];
      if (got !== BigInt(want)) throw new VerificationError(`leaf.values.${name}`, `leaf has ${got}, your statement says ${want}`);
    }
    checks.push("values equal own statement");
  }
  const [h, s] = await recomputeRoot(proof);
  checks.push("path recomputed with range checks");
  if (!equalBytes(h, record.rootHash)) throw new VerificationError("root.hash", "path does not lead to the published root");
  if (s.length !== record.rootSums.length || s.some((x, i) => x !== record.rootSums[i])) {
    throw new VerificationError("root.sums", "recomputed root sums differ from the record");
  }
  checks.push("root hash and sums match");
  const privacySkipped = record.privacy !== null && proof.privacy !== null;
  return { epoch: proof.epoch, index: proof.index,
           values: Object.fromEntries(fields.map((f, i) => [f, proof.values[i]])),
           checks, privacySkipped };
}

// Everything a user runs on their proof file: keys, record, proof, checks 1-6.
// Returns {valid: true, ...} or {valid: false, code, message}; never throws for bad evidence.
export async function verifyProofFile(proofBytes, { signedRecord, keyEntries, trust = null,
                                                    accountId = null, expected = null }) {
  try {
    // the order of `marginproof verify-account`: proof, keys, record, then the checks
    const proof = loadProofBytes(proofBytes);
    const keys = await publishedKeys(keyEntries, trust || null);
    const record = await verifyRecord(signedRecord, keys);
    const res = await verifyAccount(proof, { record, accountId, expected });
    const q = record.header.quote || {};
    return { valid: true, epoch: res.epoch.toString(), index: res.index.toString(),
             values: Object.fromEntries(Object.entries(res.values).map(([k, v]) => [k, v.toString()])),
             checks: res.checks, privacySkipped: res.privacySkipped, anchored: Boolean(trust),
             signedBy: signedRecord.key_id, quote: { symbol: q.symbol, scale: q.scale },
             accountId: accountId !== null ? accountId : proof.accountId };
  } catch (e) {
    if (e instanceof VerificationError) return { valid: false, code: e.code, message: e.detail };
    return { valid: false, code: "verifier.error", message: String(e && e.message ? e.message : e) };
  }
}
