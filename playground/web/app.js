// The page: a form over the engine's wasm-bindgen exports (authz_playground.js, written by
// wasm-bindgen at build time). Every decision shown comes from the engine; this file only
// moves text between the form and the engine and draws the answer.
import init, { evaluate, replay, export_fixture, examples } from "./authz_playground.js";

const FIELDS = ["name", "kind", "text", "from", "fromKind", "to", "principal", "source",
  "destination", "port", "sni", "http", "method", "path", "host", "headers", "jwt"];
const $ = (id) => document.getElementById(id);

function readCase() {
  const c = { v: 1 };
  for (const f of FIELDS) {
    const el = $(f);
    c[f] = el.type === "checkbox" ? el.checked : el.value;
  }
  return c;
}

function fillCase(c) {
  for (const f of FIELDS) {
    const el = $(f);
    if (el.type === "checkbox") el.checked = c[f] === true || c[f] === "true";
    else el.value = c[f] == null ? "" : String(c[f]);
  }
  showKind();
}

function showKind() {
  const cluster = $("kind").value === "cluster";
  $("cluster-fields").hidden = !cluster;
  $("config-fields").hidden = cluster;
}

// --- share: the whole case in the URL fragment ---------------------------------------------
function encodeCase(c) {
  const bytes = new TextEncoder().encode(JSON.stringify(c));
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function decodeCase(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "===".slice((b64.length + 3) % 4));
  const bytes = Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

function caseFromLocation() {
  const m = /^#case=(.+)$/.exec(location.hash);
  if (!m) return null;
  try {
    return decodeCase(m[1]);
  } catch (e) {
    setStatus(`The link's case cannot be read (${e.message}); showing the default example.`, true);
    return null;
  }
}

// --- drawing ----------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function nearestMissText(m) {
  return `nearest miss: ALLOW policy ${m.policy} spec.rules[${m.rule}] (${m.held} of ${m.of} conditions held): ` +
    `${m.field} wanted ${m.wanted}, got ${m.got}`;
}

function hopCard(proxy, name, layer, source, e, notes) {
  const decided = e.policy ? `decided by ${e.policy}${e.rule != null ? ` spec.rules[${e.rule}]` : ""}` : "decided by default (no policy matched)";
  const card = el("div", { class: `hop ${e.decision}`, "data-decision": e.decision, "data-policy": e.policy || "" },
    el("div", { class: "hop-head" },
      el("span", { class: "hop-proxy" }, proxy),
      " ", el("span", { class: "hop-name" }, name || ""),
      layer ? ` (Layer ${layer})` : "",
      ": ", el("strong", { class: "hop-decision" }, e.decision.toUpperCase())),
    el("div", { class: "hop-sees" }, `sees ${source || "no identity (plaintext)"}`),
    el("div", { class: "hop-policy" }, decided),
    el("div", { class: "hop-reason" }, e.reason));
  if (e.audit && e.audit.length) card.append(el("div", { class: "hop-audit" }, `AUDIT: ${e.audit.join(", ")}`));
  if (e.dryRun) card.append(el("div", { class: "hop-dryrun" }, `dry-run: would ${e.dryRun.decision} (${e.dryRun.policy || "by default"})`));
  if (e.nearestMiss) card.append(el("div", { class: "hop-miss" }, nearestMissText(e.nearestMiss)));
  for (const n of notes || []) card.append(el("div", { class: "note" }, `note: ${n}`));
  return card;
}

function policyList(policies, hits, misses) {
  const box = el("div", { class: "policies" });
  for (const p of policies || []) {
    const div = el("div", { class: "policy" }, el("div", { class: "policy-key" }, `${p.action} ${p.key}`),
      el("pre", { class: "policy-head" }, p.head));
    p.rules.forEach((r, i) => {
      const id = `${p.key}#${i}`;
      const cls = hits.has(id) ? "rule hit" : misses.has(id) ? "rule miss" : "rule";
      div.append(el("pre", { class: cls, title: `spec.rules[${i}]` }, `spec.rules[${i}]:\n${r}`));
    });
    box.append(div);
  }
  return box;
}

function render(out) {
  const result = $("result");
  result.replaceChildren();
  if (!out.ok) {
    result.append(el("div", { id: "error", class: "error" }, out.error));
    return;
  }
  const explains = out.kind === "cluster" ? out.hops.map((h) => h.explain) : [out];
  const hits = new Set(), misses = new Set();
  for (const e of explains) {
    if (e.policy && e.rule != null) hits.add(`${e.policy}#${e.rule}`);
    if (e.nearestMiss) misses.add(`${e.nearestMiss.policy}#${e.nearestMiss.rule}`);
  }
  result.append(el("div", { id: "decision", class: `decision ${out.decision}`, "data-decision": out.decision },
    out.decision.toUpperCase()));
  if (out.kind === "cluster") {
    result.append(el("div", { class: "call" }, `${out.from} → ${out.to}`));
    for (const n of out.notes) result.append(el("div", { class: "note" }, `note: ${n}`));
    const hops = el("div", { id: "hops" });
    if (!out.hops.length) hops.append(el("div", { class: "note" }, "no proxy on the path enforces a policy"));
    for (const h of out.hops) hops.append(hopCard(h.proxy, h.name, h.layer, h.source, h.explain, h.notes));
    result.append(hops);
  } else {
    const hops = el("div", { id: "hops" });
    const principal = $("principal").value.trim();
    hops.append(hopCard(out.mode, "", out.layer, principal, out, []));
    result.append(hops);
    for (const n of out.notes) result.append(el("div", { class: "note load-note" }, `load: ${n}`));
  }
  result.append(policyList(out.policies, hits, misses));
  for (const f of out.lint || []) {
    result.append(el("div", { class: `lint ${f.severity}` }, `lint ${f.severity} ${f.code}: ${f.object} ${f.field}: ${f.message} (${f.fix})`));
  }
}

function setStatus(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "status error" : "status";
}

let pending = false;
function update() {
  if (pending) return;
  pending = true;
  queueMicrotask(() => {
    pending = false;
    const c = readCase();
    render(JSON.parse(evaluate(JSON.stringify(c))));
    $("share-out").textContent = "";
  });
}

function doReplay() {
  const out = JSON.parse(replay($("fixture").value));
  const box = $("replay-result");
  box.replaceChildren();
  if (!out.ok) {
    box.append(el("div", { class: "error", id: "replay-error" }, out.error));
    return;
  }
  box.append(el("div", { id: "replay-summary" }, `${out.name}: ${out.passed} passed, ${out.failed} failed`));
  const table = el("table", { id: "replay-table" },
    el("tr", {}, el("th", {}, "case"), el("th", {}, "decision"), el("th", {}, "policy"), el("th", {}, "result")));
  for (const c of out.cases) {
    table.append(el("tr", { class: c.result, "data-result": c.result },
      el("td", { class: "case" }, c.case),
      el("td", { class: "decision" }, c.decision || ""),
      el("td", { class: "policy" }, c.policy || ""),
      el("td", { class: "result" }, c.failures.length ? `${c.result}: ${c.failures.join("; ")}` : c.result)));
  }
  box.append(table);
}

function doShare() {
  const url = `${location.href.split("#")[0]}#case=${encodeCase(readCase())}`;
  history.replaceState(null, "", url);
  const out = $("share-out");
  out.replaceChildren(el("a", { id: "share-link", href: url }, "link to this case"));
  if (navigator.clipboard) navigator.clipboard.writeText(url).then(() => out.append(" (copied)"), () => {});
}

function doExport() {
  const out = JSON.parse(export_fixture(JSON.stringify(readCase())));
  const box = $("share-out");
  if (!out.ok) {
    box.replaceChildren(el("span", { class: "error", id: "export-error" }, out.error));
    return;
  }
  const href = URL.createObjectURL(new Blob([out.file], { type: "application/yaml" }));
  box.replaceChildren(el("a", { id: "export-link", href, download: out.name }, `download ${out.name}`),
    el("pre", { id: "export-out" }, out.file));
}

async function main() {
  await init();
  const list = JSON.parse(examples());
  for (const [i, ex] of list.entries()) $("example").append(el("option", { value: String(i) }, ex.title));
  $("example").addEventListener("change", () => {
    fillCase(list[Number($("example").value)].case);
    update();
  });
  for (const f of FIELDS) {
    $(f).addEventListener("input", update);
    $(f).addEventListener("change", update);
  }
  $("kind").addEventListener("change", showKind);
  $("share").addEventListener("click", doShare);
  $("export").addEventListener("click", doExport);
  $("replay").addEventListener("click", doReplay);
  window.addEventListener("hashchange", () => {
    const c = caseFromLocation();
    if (c) { fillCase(c); update(); }
  });
  fillCase(caseFromLocation() || list[0].case);
  update();
  setStatus("Engine loaded: decisions update as you type.");
  document.body.dataset.ready = "true";
}

main().catch((e) => setStatus(`The engine failed to load: ${e}`, true));
