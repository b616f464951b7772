"use strict";
// Everything shown comes from the gateway and peers; it is only ever put in
// the page as text (textContent), never as HTML.
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined && text !== null) e.textContent = String(text); if (cls) e.className = cls; return e; }
function row(cells) { const tr = document.createElement("tr"); for (const c of cells) { tr.appendChild(c instanceof Node ? wrap(c) : el("td", c)); } return tr; }
function wrap(node) { const td = document.createElement("td"); td.appendChild(node); return td; }
function fill(id, rows, empty, cols) { const tb = $(id); tb.replaceChildren(); if (!rows.length) { const td = el("td", empty, "empty"); td.colSpan = cols; const tr = document.createElement("tr"); tr.appendChild(td); tb.appendChild(tr); } for (const r of rows) tb.appendChild(r); }
function figure(value, label, cls) { const d = el("div", undefined, "figure"); d.appendChild(el("b", value, cls)); d.appendChild(el("span", label)); return d; }
function ago(seconds) { if (seconds < 120) return Math.round(seconds) + " s"; if (seconds < 7200) return Math.round(seconds / 60) + " min"; if (seconds < 172800) return Math.round(seconds / 3600) + " h"; return Math.round(seconds / 86400) + " days"; }

let token = new URLSearchParams(location.hash.slice(1)).get("token");
if (token) { sessionStorage.setItem("homeward-token", token); history.replaceState(null, "", location.pathname); }
token = token || sessionStorage.getItem("homeward-token");

async function refresh() {
  if (!token) { $("login").hidden = false; $("main").hidden = true; return; }
  let resp;
  try { resp = await fetch("/v1/dashboard", { headers: { Authorization: "Bearer " + token } }); }
  catch (e) { $("error").textContent = "The gateway does not answer: " + e; return; }
  if (resp.status === 401 || resp.status === 403) { sessionStorage.removeItem("homeward-token"); token = null; $("error").textContent = "That token is not an operator's."; return refresh(); }
  if (!resp.ok) { $("error").textContent = "HTTP " + resp.status; return; }
  $("error").textContent = "";
  render(await resp.json());
  refreshChart();
}

function render(d) {
  $("login").hidden = true; $("main").hidden = false;
  $("title").textContent = "Homeward gateway " + d.node; $("org").textContent = d.organisation;
  $("updated").textContent = new Date(d.generated_at).toLocaleTimeString();
  const q = d.queues;
  $("queues").replaceChildren(
    figure(q.queued + q.delivering, "pending", (q.queued + q.delivering) ? "warn" : "ok"),
    figure(q.delivered, "delivered"), figure(q.rejected, "rejected", q.rejected ? "bad" : ""), figure(q.dead, "dead", q.dead ? "bad" : ""));
  $("oldest").replaceChildren();
  if (d.oldest_pending) {
    const o = d.oldest_pending;
    $("oldest").append("Oldest pending: ", el("b", o.case_ref), " " + o.type + " to " + o.peer + ", waiting ", el("b", ago(o.age_seconds), "warn"), ", " + o.attempts + " attempt(s)");
  } else { $("oldest").append(el("span", "Nothing waiting.", "ok")); }
  fill("peers", d.peers.map(p => row([
    el("b", p.country), el("span", p.reachable === null ? "no attempt yet" : (p.reachable ? "reachable" : "unreachable"), p.reachable === false ? "bad" : (p.reachable ? "ok" : "")),
    p.last_success ? new Date(p.last_success).toLocaleString() : "never", String(p.pending)])), "No peers configured.", 4);
  const t = d.timers;
  $("timer-figures").replaceChildren(figure(t.open, "open"), figure(t.breached, "breached", t.breached ? "bad" : "ok"));
  const trow = (x, cls) => row([el("b", x.case_ref), x.expected_type, x.side === "answer_due" ? "we owe it" : "peer owes it", el("span", new Date(x.due_at).toLocaleString(), cls)]);
  fill("breached", t.breached_list.map(x => trow(x, "bad")), "None.", 4);
  fill("due-soon", t.due_soon.map(x => trow(x, "warn")), "None.", 4);
  fill("certificates", d.certificates_expiring.map(c => row([el("b", c.which), c.subject, new Date(c.not_after).toLocaleString(),
    el("span", c.days_left < 0 ? "expired" : String(c.days_left), c.days_left < 7 ? "bad" : "warn")])), "None.", 4);
  fill("rejections", d.recent_rejections.map(r => row([el("b", r.case_ref), r.type, r.peer, el("span", (r.code ? r.code + ": " : "") + (r.message || ""), "bad")])), "None.", 4);
}

// The chart: returnees (persons handed over) per month of the last 12, one
// bar per corridor, stacked by sex, from /v1/statistics. Suppressed cells
// ("<k", no count) are drawn hatched at a fixed height, never to scale.
const SVG = "http://www.w3.org/2000/svg";
const SEXES = [["female", "#0072b2", "solid"], ["male", "#e69f00", "stripes"], ["other", "#009e73", "dots"], ["unknown", "#8c8c8c", "lines"]];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const CHART_EVERY_MS = 60000;
let chartAt = 0;
function svg(tag, attrs, text) { const e = document.createElementNS(SVG, tag); for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v)); if (text !== undefined) e.textContent = String(text); return e; }
const ymd = (d) => d.toISOString().slice(0, 10);
// The last 12 months in UTC, as the statistics count them: from the first
// day of the month 11 months back to today.
function lastTwelveMonths(now) {
  const first = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 11, 1));
  const months = [];
  for (let i = 0; i < 12; i++) months.push(ymd(new Date(Date.UTC(first.getUTCFullYear(), first.getUTCMonth() + i, 1))).slice(0, 7));
  return { from: ymd(first), to: ymd(now), months };
}
function sexStyle(sex) { return SEXES.find(s => s[0] === sex) || ["", "#8c8c8c", "lines"]; }
// One pattern per sex (colour and texture, so colour is not the only cue),
// and a hatched one per sex for suppressed cells.
function patterns() {
  const defs = svg("defs");
  for (const [sex, colour, texture] of SEXES) {
    const p = svg("pattern", { id: "fill-" + sex, patternUnits: "userSpaceOnUse", width: 6, height: 6 });
    p.appendChild(svg("rect", { width: 6, height: 6, fill: colour }));
    if (texture === "stripes") { p.setAttribute("patternTransform", "rotate(45)"); p.appendChild(svg("rect", { width: 2, height: 6, fill: "#fff", "fill-opacity": 0.45 })); }
    if (texture === "dots") p.appendChild(svg("circle", { cx: 3, cy: 3, r: 1.3, fill: "#fff", "fill-opacity": 0.6 }));
    if (texture === "lines") p.appendChild(svg("rect", { width: 6, height: 1.5, fill: "#fff", "fill-opacity": 0.6 }));
    defs.appendChild(p);
    const h = svg("pattern", { id: "hidden-" + sex, patternUnits: "userSpaceOnUse", width: 5, height: 5, patternTransform: "rotate(45)" });
    h.appendChild(svg("rect", { width: 5, height: 5, fill: "#fff" }));
    h.appendChild(svg("rect", { width: 1.5, height: 5, fill: colour }));
    defs.appendChild(h);
  }
  return defs;
}
function swatch(fill, hidden) {
  // The patterns are the chart's (drawn first).
  const s = svg("svg", { viewBox: "0 0 22 14", "aria-hidden": "true" });
  s.appendChild(svg("rect", { x: 1, y: 1, width: 20, height: 12, fill, stroke: hidden ? "#1d2430" : "none", "stroke-dasharray": hidden ? "3 2" : "none" }));
  return s;
}
function niceStep(max) { const raw = Math.max(max, 1) / 5; const p = Math.pow(10, Math.floor(Math.log10(raw))); for (const m of [1, 2, 5, 10]) if (m * p >= raw) return Math.max(1, m * p); return 10 * p; }

async function refreshChart() {
  if (Date.now() - chartAt < CHART_EVERY_MS) return;
  chartAt = Date.now();
  const period = lastTwelveMonths(new Date());
  const url = "/v1/statistics?count=returnees&from=" + period.from + "&to=" + period.to + "&group_by=month,corridor,sex";
  let resp;
  try { resp = await fetch(url, { headers: { Authorization: "Bearer " + token } }); }
  catch (e) { chartAt = 0; return chartMessage("The statistics do not answer: " + e); }
  if (resp.status === 401 || resp.status === 403) return chartMessage("The chart needs the operator role (this token may not read statistics).");
  if (!resp.ok) { chartAt = 0; return chartMessage("The statistics answered HTTP " + resp.status + "."); }
  drawChart(await resp.json(), period.months);
}
function chartMessage(text) { $("chart").replaceChildren(el("p", text, "empty")); $("chart-legend").replaceChildren(); $("chart-note").textContent = ""; }

function drawChart(table, months) {
  const k = table.k;
  const cells = table.cells.filter(c => months.includes(c.keys.month));
  if (!cells.length) return chartMessage("No returnees in the last 12 months.");
  const corridors = [...new Set(cells.map(c => c.keys.corridor))].sort();
  const extra = [...new Set(cells.map(c => c.keys.sex))].filter(s => !SEXES.some(x => x[0] === s)).sort();
  const sexes = SEXES.map(s => s[0]).concat(extra);
  const at = (m, c, s) => cells.find(x => x.keys.month === m && x.keys.corridor === c && x.keys.sex === s);
  // Per bar: the counts shown (to scale) and the hidden cells (fixed height).
  let maxShown = 0, maxHidden = 0;
  for (const m of months) for (const c of corridors) {
    let n = 0, h = 0;
    for (const s of sexes) { const x = at(m, c, s); if (!x) continue; if (typeof x.count !== "number") h++; else n += x.count; }
    maxShown = Math.max(maxShown, n); maxHidden = Math.max(maxHidden, h);
  }
  const W = 960, H = 330, left = 46, right = 8, top = 12, bottom = 74, token = 18;
  const plotW = W - left - right, plotH = H - top - bottom, base = top + plotH;
  const step = niceStep(maxShown), yMax = Math.max(step, Math.ceil(maxShown / step) * step);
  const unit = (plotH - maxHidden * token - 4) / yMax;
  const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "chart-title" });
  root.appendChild(svg("title", { id: "chart-title" }, "Returnees per month per corridor, stacked by sex, " + table.from + " to " + table.to));
  root.appendChild(patterns());
  for (let v = 0; v <= yMax; v += step) {
    const y = base - v * unit;
    root.appendChild(svg("line", { x1: left, x2: W - right, y1: y, y2: y, class: v ? "grid" : "axis" }));
    root.appendChild(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, v));
  }
  root.appendChild(svg("line", { x1: left, x2: left, y1: top, y2: base, class: "axis" }));
  root.appendChild(svg("text", { x: 12, y: top + plotH / 2, "text-anchor": "middle", transform: "rotate(-90 12 " + (top + plotH / 2) + ")" }, "Returnees"));
  root.appendChild(svg("text", { x: left + plotW / 2, y: H - 4, "text-anchor": "middle" }, "Month of handover (UTC); one bar per corridor"));
  const groupW = plotW / months.length, barW = Math.min(34, (groupW - 8) / corridors.length);
  months.forEach((m, i) => {
    const g = svg("g", { class: "month-group", "data-month": m });
    const x0 = left + i * groupW + (groupW - barW * corridors.length) / 2;
    corridors.forEach((c, j) => {
      const x = x0 + j * barW + 1, w = barW - 2;
      let y = base;
      for (const s of sexes) {
        const cell = at(m, c, s);
        if (!cell) continue;
        const hidden = typeof cell.count !== "number"; // null (or absent) when suppressed
        const h = hidden ? token : cell.count * unit;
        y -= h;
        const r = svg("rect", { x, y, width: w, height: h, fill: "url(#" + (hidden ? "hidden-" : "fill-") + (sexStyle(s)[0] || "unknown") + ")", class: hidden ? "seg hidden-count" : "seg", "data-sex": s, "data-corridor": c });
        r.appendChild(svg("title", {}, m + ", " + c + ", " + s + ": " + cell.shown));
        g.appendChild(r);
        if (h >= 12 && w >= 14) g.appendChild(svg("text", { x: x + w / 2, y: y + h / 2, class: "seg-label" + (hidden ? " halo" : (s === "female" ? " on-dark" : "")) }, cell.shown));
      }
      const ly = base + 6;
      g.appendChild(svg("text", { x: x + w / 2 + 3, y: ly, class: "corridor", "text-anchor": "end", transform: "rotate(-90 " + (x + w / 2 + 3) + " " + ly + ")" }, c));
    });
    const [year, month] = m.split("-");
    const cx = left + i * groupW + groupW / 2;
    g.appendChild(svg("text", { x: cx, y: base + 48, class: "month" }, MONTHS[Number(month) - 1]));
    if (i === 0 || month === "01") g.appendChild(svg("text", { x: cx, y: base + 60, class: "month" }, year));
    root.appendChild(g);
  });
  $("chart").replaceChildren(root);
  const legend = sexes.map(s => { const e = el("span"); e.append(swatch("url(#fill-" + (sexStyle(s)[0] || "unknown") + ")", false), s); return e; });
  const hid = el("span"); hid.append(swatch("url(#hidden-unknown)", true), "fewer than " + k + " (hatched, not to scale)");
  $("chart-legend").replaceChildren(...legend, hid);
  $("chart-note").textContent = "Counts below " + k + " are hidden and shown as <" + k + ", and so is any other count that would give a hidden one away. Total in the period: " + table.total.shown + ".";
}

$("login-form").addEventListener("submit", (e) => { e.preventDefault(); token = $("token").value.trim(); sessionStorage.setItem("homeward-token", token); chartAt = 0; refresh(); });
refresh();
setInterval(refresh, 10000);
