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

$("login-form").addEventListener("submit", (e) => { e.preventDefault(); token = $("token").value.trim(); sessionStorage.setItem("homeward-token", token); refresh(); });
refresh();
setInterval(refresh, 10000);
