// humback viewer: every server text goes into the page as text (textContent), never as HTML: segments
// are untrusted web text and instructions are model output.
"use strict";

const state = { offset: 0, limit: 50, total: 0, iterations: [], tab: "funnel", row: null };

// The view lives in the address's #fragment (tab, filters, page, open row), so a view can be shared.
const FILTERS = { iteration: "iteration", "min-score": "min", "max-score": "max", selected: "selected",
                  skipped: "skipped", rewrite: "rewrite", search: "q", sort: "sort" };
function saveView() {
  const p = new URLSearchParams({ tab: state.tab });
  for (const [id, key] of Object.entries(FILTERS)) { const v = document.getElementById(id).value; if (v) p.set(key, v); }
  if (document.getElementById("desc").checked) p.set("desc", "1");
  if (state.offset) p.set("offset", state.offset);
  if (state.row) p.set("row", state.row);
  history.replaceState(null, "", "#" + p.toString());
}
function restoreView() {
  const p = new URLSearchParams(location.hash.slice(1));
  for (const [id, key] of Object.entries(FILTERS)) if (p.has(key)) document.getElementById(id).value = p.get(key);
  document.getElementById("desc").checked = p.get("desc") === "1";
  state.offset = Math.max(0, parseInt(p.get("offset") || "0", 10) || 0);
  return { tab: p.get("tab") || "funnel", row: p.get("row") };
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(3);
  if (typeof v === "boolean") return v ? "✓" : "";
  return String(v);
}

async function api(path) {
  const res = await fetch(path);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

// A part of the run that cannot be read (the server names the file) is said in its own tab, as text; the
// other tabs keep working.
function guarded(tab, load) {
  return async (...args) => {
    const section = document.getElementById(tab);
    section.querySelectorAll(":scope > p.error").forEach(p => p.remove());
    try { await load(...args); } catch (err) { section.prepend(el("p", "Could not load this part of the run: " + err.message, "error")); }
  };
}

function showTab(name) {
  if (!document.getElementById(name) || !document.getElementById(name).classList.contains("tab")) name = "funnel";
  state.tab = name;
  saveView();
  document.querySelectorAll("nav button").forEach(b => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach(s => s.classList.toggle("active", s.id === name));
  if (name === "diff") guarded("diff", loadDiff)();
  if (name === "eval") guarded("eval", loadEval)();
}

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#1d3557", "#e63946", "#2a9d8f", "#f4a261", "#6a4c93", "#8d99ae"];

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

// Lines of [x, y] points, scaled to the box; names go in a legend as text.
function lineChart(series, xLabel, yLabel, fixed) {
  const W = 520, H = 260, P = 36;
  const pts = Object.values(series).flat();
  if (!pts.length) return el("p", "(nothing to plot)");
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  const [x0, x1] = fixed ? [0, 1] : [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = fixed ? [0, 1] : [Math.min(...ys), Math.max(...ys)];
  const sx = x => P + (W - 2 * P) * (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5);
  const sy = y => H - P - (H - 2 * P) * (y1 > y0 ? (y - y0) / (y1 - y0) : 0.5);
  const svg = svgEl("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "chart" });
  svg.append(svgEl("rect", { x: P, y: P, width: W - 2 * P, height: H - 2 * P, fill: "none", stroke: "#ccc" }));
  const label = (x, y, text, anchor) => { const t = svgEl("text", { x, y, "font-size": 11, "text-anchor": anchor || "middle" }); t.textContent = text; return t; };
  svg.append(label(W / 2, H - 6, xLabel), label(4, P - 8, yLabel, "start"),
             label(P, H - P + 14, fmt(x0)), label(W - P, H - P + 14, fmt(x1)),
             label(P - 4, H - P, fmt(y0), "end"), label(P - 4, P + 4, fmt(y1), "end"));
  const legend = el("p");
  Object.entries(series).forEach(([name, line], i) => {
    const color = COLORS[i % COLORS.length];
    svg.append(svgEl("polyline", { fill: "none", stroke: color, "stroke-width": 2,
                                   points: line.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ") }));
    const key = el("span", "■ " + name + "  ");
    key.style.color = color;
    legend.append(key);
  });
  const box = el("div");
  box.append(svg, legend);
  return box;
}

// A histogram: bars of counts over equal-width bins, with the selected share dark; axes give the bins'
// edges and the highest count, and every bar says its range and counts on hover.
function bars(h, what, xLabel) {
  const box = el("div", null, "histogram");
  const top = Math.max(1, ...h.all);
  const plot = el("div", null, "bars");
  h.all.forEach((n, i) => {
    const bar = el("div", null, "bar");
    bar.style.height = (100 * n / top) + "%";
    bar.title = `${fmt(h.edges[i])}–${fmt(h.edges[i + 1])}: ${n} ${what}, ${h.selected[i]} selected`;
    const sel = el("div", null, "sel");
    sel.style.height = (n ? 100 * h.selected[i] / n : 0) + "%";
    bar.append(sel);
    plot.append(bar);
  });
  const yAxis = el("div", null, "y-axis");
  yAxis.append(el("span", `${top} ${what}`), el("span", "0"));
  const xAxis = el("div", null, "x-axis");
  const mid = h.edges[Math.floor(h.edges.length / 2)];
  xAxis.append(el("span", fmt(h.edges[0])), el("span", `${xLabel} (${fmt(mid)})`), el("span", fmt(h.edges[h.edges.length - 1])));
  const row = el("div", null, "plot-row");
  row.append(yAxis, plot);
  box.append(row, xAxis, el("p", `${h.all.reduce((a, b) => a + b, 0)} ${what}, ${h.selected.reduce((a, b) => a + b, 0)} selected (dark)`, "legend"));
  return box;
}

async function loadFunnel() {
  const f = await api("/api/funnel");
  state.iterations = f.iterations;
  document.getElementById("title").textContent = "humback run " + (f.name || "");
  const body = document.querySelector("#funnel-table tbody");
  body.replaceChildren();
  for (const s of f.steps) {
    const tr = el("tr");
    tr.append(el("td", s.step), el("td", fmt(s.rows), "num"),
              el("td", s.dropped ? Object.entries(s.dropped).map(([k, v]) => k + " " + v).join(", ") : ""));
    body.append(tr);
  }
  for (const id of ["iteration", "diff-iteration"]) {
    const sel = document.getElementById(id);
    sel.replaceChildren();
    for (const t of (id === "diff-iteration" ? f.iterations.slice(1) : f.iterations)) sel.append(new Option(String(t), String(t)));
    if (sel.options.length) sel.value = sel.options[sel.options.length - 1].value;
  }
  const sort = document.getElementById("sort");
  sort.replaceChildren(new Option("id", "id"), new Option("response length", "response_chars"));
  for (const t of f.iterations) for (const n of ["score", "judge", "ifd", "nll", "end"]) sort.append(new Option(`iter ${t} ${n}`, `s${t}_${n}`));
  const hist = document.getElementById("histograms");
  hist.replaceChildren();
  for (const t of f.iterations) {
    const h = await api(`/api/histogram/${t}?signal=score`);
    if (!h.all.length) continue;
    hist.append(el("h3", `iteration ${t}`), bars(h, "candidates", "score"));
  }
  const last = f.iterations[f.iterations.length - 1];
  const plots = document.getElementById("plots");
  plots.replaceChildren();
  if (last !== undefined) {
    const h = await api(`/api/lengths/${last}`);
    plots.append(el("h3", `response length, pool vs selected (iteration ${last})`), bars(h, "candidates", "characters"));
  }
  const c = await api("/api/curves");
  plots.append(el("h3", "training loss"), lineChart(c.loss, "step", "loss", false));
  state.roc = c.roc;
  const reasons = new Set();
  f.steps.forEach(s => { if (s.step.startsWith("selected")) Object.keys(s.dropped || {}).forEach(k => reasons.add(k)); });
  const skip = document.getElementById("skipped");
  skip.replaceChildren(new Option("any", ""));
  reasons.forEach(r => skip.append(new Option(r, r)));
}

// Column names as words: s2_score -> "score (iter 2)", sel2 -> "selected (iter 2)".
const WORDS = { score: "score", judge: "judge score", ifd: "IFD", nll: "NLL", end: "end log-prob", skipped: "skipped because" };
function header(col) {
  const base = { id: "id", instruction: "instruction", response: "response", response_chars: "response length" }[col];
  if (base) return base;
  let m = col.match(/^s(\d+)_(\w+)$/);
  if (m) return `${WORDS[m[2]] || m[2]} (iter ${m[1]})`;
  if ((m = col.match(/^sel(\d+)$/))) return `selected (iter ${m[1]})`;
  if ((m = col.match(/^r(\d+)_status$/))) return `rewrite (iter ${m[1]})`;
  return col;
}

function query() {
  const p = new URLSearchParams({ offset: state.offset, limit: state.limit });
  const val = id => document.getElementById(id).value;
  if (val("iteration")) p.set("iteration", val("iteration"));
  if (val("min-score")) p.set("min_score", val("min-score"));
  if (val("max-score")) p.set("max_score", val("max-score"));
  if (val("selected")) p.set("selected", val("selected"));
  if (val("search")) p.set("q", val("search"));
  if (val("skipped")) p.set("skipped", val("skipped"));
  if (val("rewrite")) p.set("rewrite", val("rewrite"));
  p.set("sort", val("sort") || "id");
  if (document.getElementById("desc").checked) p.set("desc", "true");
  return p;
}

async function loadTable() {
  const page = await api("/api/candidates?" + query());
  state.total = page.total;
  document.getElementById("count").textContent = `${page.total} candidates match`;
  document.getElementById("page").textContent =
    page.total ? `${page.offset + 1}–${Math.min(page.offset + page.limit, page.total)} of ${page.total}` : "";
  const t = page.iteration;
  const head = document.querySelector("#table thead");
  const cols = ["id", "instruction", "response", "response_chars"];
  if (t !== null) cols.push(`s${t}_score`, `s${t}_judge`, `s${t}_ifd`, `sel${t}`, `s${t}_skipped`);
  if (t !== null && page.rows.some(r => r[`r${t}_status`])) cols.push(`r${t}_status`);
  const hr = el("tr");
  cols.forEach(c => hr.append(el("th", header(c))));
  head.replaceChildren(hr);
  const body = document.querySelector("#table tbody");
  body.replaceChildren();
  for (const r of page.rows) {
    const tr = el("tr", null, "row");
    tr.dataset.id = r.id;
    cols.forEach(c => tr.append(el("td", fmt(r[c]), c === "instruction" || c === "response" ? "text" : "num")));
    tr.addEventListener("click", () => openRow(r.id));
    body.append(tr);
  }
}

async function openRow(id) {
  const r = await api("/api/candidates/" + encodeURIComponent(id));
  const box = document.getElementById("detail-body");
  box.replaceChildren(el("h2", "candidate " + r.id), el("h3", "instruction"), el("pre", r.instruction),
                      el("h3", "response (the segment)"), el("pre", r.response));
  for (const t of state.iterations) {
    box.append(el("h3", `iteration ${t}: score ${fmt(r[`s${t}_score`])}, judge ${fmt(r[`s${t}_judge`])},` +
                        ` IFD ${fmt(r[`s${t}_ifd`])}, NLL ${fmt(r[`s${t}_nll`])}, end ${fmt(r[`s${t}_end`])},` +
                        ` ${r[`sel${t}`] ? "selected" : "not selected"}${r[`s${t}_skipped`] ? " (skipped: " + r[`s${t}_skipped`] + ")" : ""}`));
    if (r[`s${t}_reasoning`]) box.append(el("pre", r[`s${t}_reasoning`]));
    if (r[`s${t}_like`]) box.append(el("p", `passed over: too close to the selected candidate ${r[`s${t}_like`]}`));
    if (r[`r${t}_status`]) box.append(sideBySide(t, r));
  }
  if (r.segment) {
    box.append(el("h3", "source"), el("p", (r.segment.url || "") + "  " + (r.segment.header_path || []).join(" › ")));
  }
  document.getElementById("detail").hidden = false;
  state.row = id;
  saveView();
}

// Words of a and b, each marked where it is not in their longest common subsequence.
function wordDiff(a, b) {
  const x = a.split(/(\s+)/), y = b.split(/(\s+)/);
  const n = x.length, m = y.length;
  if (n * m > 4e6) return [x.map(w => [w, false]), y.map(w => [w, false])];  // too long to diff in the page
  const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) {
    L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  }
  const ox = [], oy = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { ox.push([x[i++], false]); oy.push([y[j++], false]); }
    else if (L[i + 1][j] >= L[i][j + 1]) ox.push([x[i++], true]);
    else oy.push([y[j++], true]);
  }
  while (i < n) ox.push([x[i++], true]);
  while (j < m) oy.push([y[j++], true]);
  return [ox, oy];
}

function marked(words, tag) {
  const pre = el("pre", null, "text");
  for (const [w, changed] of words) pre.append(changed && w.trim() ? el(tag, w) : document.createTextNode(w));
  return pre;
}

// The original web response and the rewrite, side by side: words only in one of them are marked.
function sideBySide(t, r) {
  const status = r[`r${t}_status`];
  const box = el("div", null, "side-by-side");
  const said = { rewritten: "rewritten: training uses the rewrite", unparsed: "the reply did not parse: the original is kept", unchanged: "the rewrite copied the original word for word" };
  box.append(el("h3", `rewrite, iteration ${t}: ${said[status] || status.replace("failed_", "failed the check: ") + " (the original is kept)"}`));
  const [orig, rew] = wordDiff(r.response, r[`r${t}_rewrite`] || "");
  const grid = el("div", null, "columns");
  const left = el("div"), right = el("div");
  left.append(el("h4", "original (the web segment)"), marked(orig, "del"));
  right.append(el("h4", "rewrite"), r[`r${t}_rewrite`] ? marked(rew, "ins") : el("p", "(no rewrite text)"));
  grid.append(left, right);
  box.append(grid);
  return box;
}

async function loadDiff() {
  const t = document.getElementById("diff-iteration").value;
  const box = document.getElementById("diff-body");
  box.replaceChildren();
  if (!t) { box.append(el("p", "The iteration diff needs two iterations.")); return; }
  const d = await api(`/api/diff/${t}`);
  for (const [name, label] of [["gained", `selected in iteration ${t}, not in ${t - 1}`], ["lost", `selected in ${t - 1}, not in ${t}`]]) {
    box.append(el("h3", `${label}: ${d[name].length}`));
    const table = el("table");
    for (const r of d[name]) {
      const tr = el("tr", null, "row");
      tr.append(el("td", r.id), el("td", r.instruction, "text"), el("td", fmt(r.before), "num"), el("td", fmt(r.after), "num"));
      tr.addEventListener("click", () => { showTab("candidates"); openRow(r.id); });
      table.append(tr);
    }
    box.append(table);
  }
}

async function loadEval() {
  const e = await api("/api/eval");
  const box = document.getElementById("eval-body");
  box.replaceChildren();
  if (!e.metrics) { box.append(el("p", "No evaluation yet: run `humback eval RUN --heldout FILE`.")); return; }
  const wins = (e.metrics.win_rates || {}).pairs || {};
  box.append(el("h3", "win rates (referee " + ((e.metrics.win_rates || {}).judge || "") + ")"));
  const wt = el("table");
  for (const [pair, w] of Object.entries(wins)) {
    const tr = el("tr");
    tr.append(el("td", pair), el("td", "win rate " + fmt(w.win_rate)), el("td", "length-controlled " + fmt(w.lc_win_rate)));
    wt.append(tr);
  }
  box.append(wt, el("h3", "answers side by side"));
  const table = el("table", null, "answers");
  const hr = el("tr");
  ["instruction", ...e.models].forEach(m => hr.append(el("th", m)));
  table.append(hr);
  for (const a of e.answers) {
    const tr = el("tr");
    tr.append(el("td", a.instruction, "text"));
    e.models.forEach(m => tr.append(el("td", a[m], "text")));
    table.append(tr);
  }
  box.append(table);
  for (const [it, signals] of Object.entries(state.roc || {})) {
    box.append(el("h3", `judge of ${it}: ROC on held-out pairs vs built negatives`), lineChart(signals, "false positive rate", "true positive rate", true));
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  document.querySelectorAll("nav button").forEach(b => b.addEventListener("click", () => showTab(b.dataset.tab)));
  const table = guarded("candidates", loadTable);
  document.getElementById("filters").addEventListener("submit", ev => { ev.preventDefault(); state.offset = 0; saveView(); table(); });
  document.getElementById("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); saveView(); table(); });
  document.getElementById("next").addEventListener("click", () => { if (state.offset + state.limit < state.total) { state.offset += state.limit; saveView(); table(); } });
  document.getElementById("close").addEventListener("click", () => { document.getElementById("detail").hidden = true; state.row = null; saveView(); });
  document.getElementById("diff-iteration").addEventListener("change", guarded("diff", loadDiff));
  await guarded("funnel", loadFunnel)();
  const view = restoreView();  // after the funnel filled the iteration and reason lists
  showTab(view.tab);
  await table();
  if (view.row) await guarded("candidates", openRow)(view.row);
  document.body.dataset.ready = "true";
});
