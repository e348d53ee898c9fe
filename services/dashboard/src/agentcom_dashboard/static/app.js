// AgentCom dashboard page: one snapshot over HTTP, then live events over /ws?after=<seq>.
// Every action is a POST with the session's CSRF token; the socket only carries events out.
"use strict";

const app = document.getElementById("app");
const isAdmin = app.dataset.admin === "true";
const state = {
  seq: 0, csrf: null, tasks: new Map(), dead: new Map(), agents: new Map(),
  alerts: new Map(), calls: [], hub: {}, hubTime: {}, goals: new Map(), metrics: [],
  stats: null, panels: {}, vapid: null, presence: {},
};
const TERMINAL = new Set(["completed", "partial_pass", "dead_letter", "cancelled"]);
const charts = {};

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function short(id) { return (id || "").replace(/^task-/, "").slice(0, 8); }

function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

function unavailable(el, read, what) {
  el.replaceChildren(h("p", { class: "na" }, `${what}: not available`, h("br"), h("small", {}, read.detail || "")));
}

async function call(method, url) {
  const res = await fetch(url, { method, headers: { "X-CSRF-Token": state.csrf || "" }, credentials: "same-origin" });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.detail || `${res.status}`);
  return body;
}

function toast(text, bad) {
  const t = h("div", { class: bad ? "toast bad" : "toast", role: "status" }, text);
  document.body.append(t);
  setTimeout(() => t.remove(), 4000);
}

async function act(url, label) {
  try { await call("POST", url); toast(`${label}: done`); }
  catch (err) { toast(`${label}: ${err.message}`, true); }
}

// ---- tasks -------------------------------------------------------------------------------
function upsertTask(task) {
  const old = state.tasks.get(task.id) || {};
  state.tasks.set(task.id, { ...old, ...task });
  if (task.state === "dead_letter") state.dead.set(task.id, state.tasks.get(task.id));
  else if (task.state) state.dead.delete(task.id);
}

async function fetchTask(id) {
  const res = await fetch(`/ui/tasks/${encodeURIComponent(id)}`, { credentials: "same-origin" });
  if (!res.ok) return null;
  const body = await res.json();
  return body.task.available ? body : null;
}

function renderTasks() {
  const filter = document.getElementById("task-filter").value;
  const q = document.getElementById("task-search").value.trim().toLowerCase();
  const rows = [...state.tasks.values()]
    .filter(t => !filter || t.state === filter)
    .filter(t => !q || `${t.id} ${t.description || ""} ${t.assigned_to || ""}`.toLowerCase().includes(q))
    .sort((a, b) => (b.updated_at || "").localeCompare(a.updated_at || ""))
    .slice(0, 200);
  document.getElementById("tasks-body").replaceChildren(...rows.map(t => h("tr", { "data-task": t.id, class: `st-${t.state}`, onclick: () => openTask(t.id) },
    h("td", {}, h("span", { class: `badge st-${t.state}`, "data-state": t.state }, t.state)),
    h("td", { class: "desc" }, h("code", {}, short(t.id)), " ", t.description || ""),
    h("td", {}, t.priority || ""),
    h("td", {}, t.assigned_to || ""),
    h("td", { class: "muted", title: t.updated_at || "" }, ago(t.updated_at)),
    h("td", {}, isAdmin && t.state && !TERMINAL.has(t.state) && t.state !== "failed"
      ? h("button", { class: "small", "data-cancel": t.id, onclick: e => { e.stopPropagation(); cancelTask(t); } }, "cancel") : null),
  )));
  document.getElementById("tasks-note").textContent = rows.length ? "" : "No tasks match.";
}

// A cancel cannot be undone (the agent's work is dropped), so it asks first.
function cancelTask(t) {
  if (window.confirm(`Cancel task ${short(t.id)} "${t.description || ""}"? Its agent's work is dropped.`)) act(`/ui/tasks/${t.id}/cancel`, "cancel");
}

function renderDead() {
  const items = [...state.dead.values()];
  document.getElementById("dead-list").replaceChildren(...items.map(t => h("li", { "data-dead": t.id },
    h("div", {}, h("code", {}, short(t.id)), " ", t.description || ""),
    h("small", { class: "error" }, t.last_error || ""),
    isAdmin ? h("button", { class: "retry", "data-retry": t.id, onclick: () => act(`/ui/tasks/${t.id}/retry`, "retry") }, "retry") : null,
  )));
  document.getElementById("dead-note").textContent = items.length ? "" : "Nothing dead-lettered.";
  document.getElementById("kpi-dead").textContent = items.length;
}

// ---- the task page: what the queue's TaskView and the sidecar's result really carry ---------
// The sidecar's result (sidecar/attempts.py `_result`, work.py `_deliver`): summary, exit_code,
// output_tail, verification {status, checks: [{check, target, passed, duration_ms,
// output_tail, timed_out}]}, tokens_in, tokens_out, cost_usd, branch, base, commit, pushed,
// pr_url. The command is the task's metadata.command.
function fact(label, value, key) {
  return h("div", { class: "fact", "data-fact": key }, h("dt", {}, label), h("dd", {}, value));
}

// metadata.command is an argv; shown as a shell would take it (quoted where it has spaces).
function argv(cmd) {
  if (!Array.isArray(cmd)) return String(cmd);
  return cmd.map(a => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(" ");
}

function taskFacts(t) {
  const r = t.result || {};
  const facts = [];
  const branch = r.branch || t.branch;
  if (t.repo) facts.push(fact("repo", h("code", {}, t.repo), "repo"));
  if (branch) facts.push(fact("branch", h("code", {}, branch), "branch"));
  if (r.commit) facts.push(fact("commit", h("code", { title: r.commit }, r.commit.slice(0, 12)), "commit"));
  if (r.pr_url) facts.push(fact("pull request", h("a", { href: r.pr_url, target: "_blank", rel: "noopener" }, r.pr_url), "pr"));
  else if (r.branch) facts.push(fact("pushed", r.pushed ? "yes" : (r.delivery_note || "no"), "pushed"));
  if (t.metadata && t.metadata.command) facts.push(fact("command", h("code", {}, argv(t.metadata.command)), "command"));
  if (t.assigned_to) facts.push(fact("agent", t.assigned_to, "agent"));
  if (r.exit_code != null) facts.push(fact("exit code", String(r.exit_code), "exit"));
  if (r.tokens_in != null || r.cost_usd != null) facts.push(fact("cost", `${money(r.cost_usd)} · ${r.tokens_in || 0} in / ${r.tokens_out || 0} out tokens`, "cost"));
  if (r.summary) facts.push(fact("summary", r.summary, "summary"));
  const d = r.delivery;
  if (d && d.blocked) facts.push(fact("pre-publication scan", `blocked the push: ${d.findings.length} findings`, "scan"));
  if (d && d.risk) facts.push(fact("risk", riskFact(d), "risk"));
  return facts.length ? [h("dl", { class: "facts", id: "task-facts" }, facts)] : [];
}

// result.delivery (contracts/delivery.py DeliveryReport): the tier, what raised it, the second
// model's review, and what the pull request got (draft, review, merge; CI; the goal's cap).
function riskFact(d) {
  const got = d.merged ? "merged" : d.action === "draft" ? "draft pull request"
    : d.action === "merge" ? `merge due, not merged${d.merge_note ? `: ${d.merge_note}` : ""}`
    : d.action === "review" ? "pull request for review" : "no pull request";
  const rv = d.review;
  const review = !rv ? "no review asked" : rv.verdict ? `review by ${rv.model}: ${rv.verdict}` : `no review: ${rv.note || ""}`;
  return h("div", {},
    h("span", { class: `badge tier-${d.risk.tier}`, "data-tier": String(d.risk.tier) }, `tier ${d.risk.tier}`), " ",
    h("span", { "data-action": d.action || "" }, got), d.ci ? ` · CI ${d.ci}` : "",
    h("ul", { class: "reasons" }, d.risk.reasons.map(why => h("li", {}, why))),
    h("p", { class: "muted", "data-review": rv && rv.verdict ? rv.verdict : "none" }, review),
    rv && rv.comments && rv.comments.length ? h("ul", { class: "reasons" }, rv.comments.map(c => h("li", {}, c))) : "");
}

function outputTail(t, events) {
  // Live: the progress batches seen for this task; once it ended, the result's output_tail.
  const lines = events.filter(c => c.subject.endsWith(".progress")).flatMap(c => (c.data || {}).lines || []);
  const text = lines.length ? lines.slice(-40).join("\n") : ((t.result || {}).output_tail || "");
  return text ? h("pre", { class: "output", id: "task-output" }, text) : h("p", { class: "muted" }, "no output yet");
}

function verificationChecks(result) {
  const v = result && result.verification;
  if (!v) return h("p", { class: "muted" }, result && result.verification_note ? result.verification_note : "no report");
  if (!v.checks.length) return h("p", { class: "muted", "data-verification": v.status }, "not verified: the task has no checks");
  return h("div", { id: "task-checks", "data-verification": v.status },
    h("p", {}, h("span", { class: `badge vs-${v.status}` }, v.status), ` ${v.summary ? `${v.summary.passed}/${v.summary.total} passed` : ""}`),
    h("ol", { class: "checks" }, v.checks.map(c => h("li", { class: c.passed ? "check ok" : "check bad", "data-check": c.check, "data-passed": String(c.passed) },
      h("span", { class: `badge ${c.passed ? "vs-pass" : "vs-fail"}` }, c.passed ? "passed" : (c.timed_out ? "timed out" : "failed")), " ",
      h("strong", {}, c.check), " ", h("code", {}, c.target || ""), h("small", { class: "muted" }, ` ${Math.round(c.duration_ms)} ms`),
      c.output_tail ? h("pre", { class: "output" }, c.output_tail.slice(-1500)) : null))));
}

// The open task page follows its task live: progress batches and tool calls are appended as
// they arrive on the socket, and a change of state re-reads the task (result, checks, cost).
async function openTask(id) {
  const dlg = document.getElementById("task-dialog");
  state.openTask = id;
  state.openDetail = await fetchTask(id);
  renderTaskPage();
  if (!dlg.open) dlg.showModal();
}

function renderTaskPage() {
  const detail = state.openDetail;
  const box = document.getElementById("task-detail");
  if (!detail) { box.replaceChildren(h("p", { class: "na" }, "task not available")); return; }
  const t = detail.task.data;
  const hist = detail.history.available ? detail.history.data : [];
  const calls = detail.tool_calls.filter(c => !c.subject.endsWith(".progress"));
  box.replaceChildren(...[
    h("h3", {}, t.description),
    h("p", {}, h("span", { class: `badge st-${t.state}`, id: "task-state", "data-state": t.state }, t.state), ` ${t.priority} · generation ${t.generation} · retries ${t.retry_count}/${t.max_retries}`),
    t.waiting_reason ? h("p", { class: "waiting", "data-waiting": t.id }, `waiting: ${t.waiting_reason}`) : null,
    t.last_error ? h("p", { class: "error" }, t.last_error) : null,
    ...taskFacts(t),
    h("h4", {}, "Output"),
    outputTail(t, detail.tool_calls),
    h("h4", {}, "Tool calls"),
    calls.length ? h("ol", { class: "stream", id: "task-calls" }, calls.map(taskCall)) : h("p", { class: "muted" }, "none seen"),
    h("h4", {}, "Verification"),
    verificationChecks(t.result),
    h("h4", {}, "History"),
    h("ol", { class: "history" }, hist.map(x => h("li", {}, `${x.from_state || "∅"} → ${x.to_state}`, h("small", { class: "muted" }, ` ${x.reason} · ${x.actor} · ${new Date(x.at).toLocaleTimeString()}`)))),
  ].filter(Boolean));
}

// One tool call on the task page: the tool, its arguments' summary and its result's summary in
// full (the stream on the front page clips them).
function taskCall(c) {
  const d = c.data || {};
  return h("li", { class: d.ok === false ? "call bad" : "call", "data-tool": d.tool || "" },
    h("small", { class: "muted" }, new Date(c.at).toLocaleTimeString(), " "),
    h("strong", {}, d.tool || "tool"), d.duration_ms != null ? h("small", { class: "muted" }, ` ${Math.round(d.duration_ms)} ms`) : null,
    d.ok === false ? h("small", { class: "error" }, ` ${d.error_code || "failed"}`) : null,
    h("pre", { class: "output args", "data-arguments": "" }, d.arguments || ""),
    d.result ? h("pre", { class: "output result", "data-result": "" }, d.result) : null);
}

async function onOpenTaskEvent(ev, d) {
  if (!state.openTask || d.task_id !== state.openTask || !document.getElementById("task-dialog").open) return;
  if (ev.subject.endsWith(".progress") || ev.subject.endsWith(".tool_call")) {
    if (state.openDetail && !state.openDetail.tool_calls.some(c => c.seq === ev.seq)) state.openDetail.tool_calls.push(ev);
  } else if (d.to_state) {
    const fresh = await fetchTask(state.openTask);
    if (fresh) {
      // the events seen while it was open stay, whatever the server's bounded memory kept
      const seen = new Set(fresh.tool_calls.map(c => c.seq));
      fresh.tool_calls.push(...((state.openDetail || { tool_calls: [] }).tool_calls.filter(c => !seen.has(c.seq))));
      fresh.tool_calls.sort((a, b) => a.seq - b.seq);
      state.openDetail = fresh;
    }
  }
  renderTaskPage();
}

// ---- agents, lanes, alerts, side panels ----------------------------------------------------
function agentLine(a, task, beat) {
  const parts = [];
  if (task) parts.push(`task ${short(task.id)}`);
  if (beat) {
    parts.push(`heartbeat ${ago(beat.heartbeat_at)}`);
    for (const [key, label] of [["cpu_percent", "cpu"], ["ram_percent", "ram"], ["vram_percent", "vram"]]) {
      if (beat[key] != null) parts.push(`${label} ${Math.round(beat[key])}%`);
    }
    if (beat.isolation === "none") parts.push("task commands unisolated");
    if (beat.isolation === "unavailable") parts.push("refuses tasks: isolation required, unavailable");
  } else parts.push(`changed ${ago(a.updated_at)}`);
  return parts.join(" · ");
}

// The scheduler refuses (409 not_supervised) to restart a sidecar whose hello said nothing
// supervises it: it would exit and stay stopped. The button says so instead of failing.
function restartButton(a) {
  if (a.supervisor === "none") {
    const why = "not supervised: its sidecar was started by hand, a restart would stop it for good";
    return h("button", { class: "small", disabled: true, title: why, "data-restart": a.id, "data-restart-reason": why }, "restart");
  }
  return h("button", { class: "small", "data-restart": a.id, onclick: () => act(`/ui/agents/${a.id}/restart`, "restart") }, "restart");
}

function renderAgents() {
  const busy = new Map([...state.tasks.values()].filter(t => t.assigned_to && !TERMINAL.has(t.state)).map(t => [t.assigned_to, t]));
  const list = [...state.agents.values()];
  document.getElementById("agent-list").replaceChildren(...list.map(a => h("li", { "data-agent": a.id },
    h("div", {}, h("span", { class: `dot ag-${a.state}` }), h("strong", {}, a.id), " ", h("span", { class: "muted" }, a.state)),
    h("small", { class: "muted" }, agentLine(a, busy.get(a.id), state.presence[a.id])),
    isAdmin ? restartButton(a) : null,
  )));
  const online = list.filter(a => a.state !== "offline").length;
  document.getElementById("kpi-agents").textContent = state.panels.agents && !state.panels.agents.available ? "–" : `${online}/${list.length}`;
  if (!list.length && state.panels.agents) {
    const read = state.panels.agents;
    document.getElementById("agents-note").textContent = read.available ? "No agents registered." : `not available: ${read.detail}`;
  } else document.getElementById("agents-note").textContent = "";
}

function renderLanes() {
  const counts = { urgent: 0, high: 0, normal: 0, low: 0 };
  let working = 0;
  for (const t of state.tasks.values()) {
    if (t.state === "queued" && t.priority in counts) counts[t.priority] += 1;
    if (t.state === "working" || t.state === "assigned") working += 1;
  }
  const max = Math.max(1, ...Object.values(counts));
  document.getElementById("lanes").replaceChildren(...Object.entries(counts).map(([lane, n]) => h("div", { class: "lane" },
    h("span", {}, lane), h("div", { class: "bar" }, h("i", { style: `width:${(100 * n) / max}%` })), h("b", {}, n))));
  document.getElementById("kpi-queued").textContent = Object.values(counts).reduce((a, b) => a + b, 0);
  document.getElementById("kpi-working").textContent = working;
}

function renderAlerts() {
  const box = document.getElementById("alerts");
  box.replaceChildren(...[...state.alerts.values()].map(a => h("div", { class: `alert sev-${a.severity}${a.acknowledged ? " acked" : ""}`, "data-alert": a.rule_id },
    h("strong", {}, a.severity.toUpperCase(), " ", a.rule_id), " ", a.message,
    a.runbook ? h("small", { class: "runbook" }, " · runbook: ", a.runbook) : null,
    a.acknowledged ? h("small", {}, ` · acknowledged by ${a.acknowledged_by || "admin"}`) :
      isAdmin ? h("button", { class: "small", onclick: () => act(`/ui/alerts/${a.rule_id}/acknowledge`, "acknowledge") }, "acknowledge") : null,
  )));
}

// What the sidecar sends: a ToolCallReport (`tool`, `arguments`, `result`, `ok`) or a
// Progress batch (`lines` of the command's output). Nothing else is read.
function clip(text, n) { text = String(text || ""); return text.length > n ? `${text.slice(0, n - 1)}…` : text; }

function streamItem(c) {
  const d = c.data || {};
  const at = h("small", { class: "muted" }, new Date(c.at).toLocaleTimeString(), " ");
  if (c.subject.endsWith(".progress")) {
    const lines = d.lines || [];
    return h("li", { class: "progress", "data-kind": "progress" }, at, h("code", {}, short(d.task_id)), " ", h("strong", {}, "output"), " ",
      h("span", { class: "lines" }, clip(lines.slice(-3).join(" ⏎ "), 240)));
  }
  return h("li", { class: d.ok === false ? "call bad" : "call", "data-kind": "tool_call" }, at, h("code", {}, short(d.task_id)), " ",
    h("strong", {}, d.tool || "tool"), " ", h("span", { class: "args" }, clip(d.arguments, 160)),
    d.result ? h("small", { class: "muted result" }, ` → ${clip(d.result, 200)}`) : null,
    d.ok === false ? h("small", { class: "error" }, ` ${d.error_code || "failed"}`) : null);
}

function renderStream() {
  document.getElementById("tool-stream").replaceChildren(...state.calls.slice(-50).reverse().map(streamItem));
  document.getElementById("stream-note").textContent = state.calls.length ? "" : "No tool calls yet.";
}

function renderSide() {
  const p = state.panels;
  const llm = document.getElementById("llm-endpoints");
  if (p.llm_endpoints && p.llm_endpoints.available) {
    const eps = Array.isArray(p.llm_endpoints.data) ? p.llm_endpoints.data : (p.llm_endpoints.data.endpoints || []);
    llm.replaceChildren(eps.length ? h("ul", { class: "list" }, eps.map(e => h("li", {},
      h("span", { class: `dot ${e.healthy === false || e.status === "unhealthy" ? "ag-offline" : "ag-idle"}` }),
      h("strong", {}, e.name || e.id || e.url), " ", h("small", { class: "muted" }, (e.models || []).map(m => m.name || m).join(", "), e.load != null ? ` · load ${e.load}` : "")))) : h("p", { class: "muted" }, "No endpoints registered."));
  } else if (p.llm_endpoints) unavailable(llm, p.llm_endpoints, "LLM registry");
  const costs = document.getElementById("llm-costs");
  if (p.llm_costs && p.llm_costs.available) renderCosts(costs, p.llm_costs.data, p.llm_costs_by_agent);
  else if (p.llm_costs) unavailable(costs, p.llm_costs, "Cost ledger");
  renderHub();
  renderGoals();
}

// The llm-registry ledger's `Costs` (views.py): {since, group_by, rows: [{key, calls, failed,
// tokens_in, tokens_out, duration_ms, cost_usd}]}, read grouped by model and by caller (the
// agent whose token made the call). Each grouping is a table and a bar per row.
function costTable(title, kind, read) {
  if (!read || !read.available) return h("p", { class: "muted" }, `${title}: not available`);
  const rows = [...read.data.rows].sort((a, b) => b.cost_usd - a.cost_usd || (b.tokens_in + b.tokens_out) - (a.tokens_in + a.tokens_out));
  if (!rows.length) return h("p", { class: "muted", "data-costs": kind }, `${title}: no calls in the last 24 h`);
  const weight = r => r.cost_usd > 0 ? r.cost_usd : r.tokens_in + r.tokens_out;
  const max = Math.max(1e-9, ...rows.map(weight));
  return h("table", { class: "costs", "data-costs": kind },
    h("thead", {}, h("tr", {}, h("th", {}, title), h("th", {}, "calls"), h("th", {}, "tokens in/out"), h("th", {}, "USD"), h("th", {}, ""))),
    h("tbody", {}, rows.map(r => h("tr", { "data-cost-key": r.key || "" },
      h("td", {}, h("code", {}, r.key || "–")),
      h("td", {}, `${r.calls}${r.failed ? ` (${r.failed} failed)` : ""}`),
      h("td", {}, `${r.tokens_in} / ${r.tokens_out}`),
      h("td", {}, `$${r.cost_usd.toFixed(4)}`),
      h("td", { class: "cost-bar" }, h("div", { class: "bar" }, h("i", { style: `width:${(100 * weight(r)) / max}%` })))))));
}

function renderCosts(box, byModel, byAgent) {
  box.replaceChildren(costTable("model", "model", { available: true, data: byModel }), costTable("agent", "agent", byAgent),
    h("small", { class: "muted" }, "last 24 h; bars by USD, by tokens where calls were free"));
}

// ---- hub and goals -------------------------------------------------------------------------
const GOAL_OPEN = new Set(["submitted", "planning", "awaiting_approval", "executing", "verifying"]);
const GOAL_RETRY = new Set(["failed", "needs_review", "cancelled"]);

async function confirmed(question, url, label, body) {
  if (!window.confirm(question)) return false;
  try {
    const res = await fetch(url, { method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": state.csrf || "", "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
    const reply = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(reply.detail || `${res.status}`);
    toast(`${label}: done`);
    return true;
  } catch (err) { toast(`${label}: ${err.message}`, true); return false; }
}

async function refreshHub() {
  const res = await fetch("/ui/hub", { credentials: "same-origin" });
  if (!res.ok) return;
  const body = await res.json();
  state.panels.hub = body.state;
  state.hubHistory = body.history.available ? body.history.data.moves : [];
  state.hubReads = { healing: body.healing, proposals: body.proposals, findings: body.findings };
  renderHub(); renderHealing(); renderProposals(); renderFindings();
}

// GET /api/hub/healing (contracts/health.py HealingPage): runs newest first, each with the
// issues that started it (source, severity, category, evidence) and its actions (remedy,
// target, outcome, detail, evidence).
function evidence(ev) {
  const pairs = Object.entries(ev || {});
  return pairs.length ? h("small", { class: "muted evidence" }, pairs.map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ")) : null;
}

function renderHealing() {
  const box = document.getElementById("healing");
  const read = (state.hubReads || {}).healing;
  if (!read) return;
  if (!read.available) { unavailable(box, read, "Healing"); return; }
  const runs = read.data.runs;
  if (!runs.length) { box.replaceChildren(h("p", { class: "muted" }, "No healing runs: nothing critical was seen.")); return; }
  box.replaceChildren(h("ol", { class: "runs" }, runs.map(r => h("li", { "data-healing-run": r.id, "data-outcome": r.outcome },
    h("p", {}, h("span", { class: `badge heal-${r.outcome}` }, r.outcome), r.dry_run ? h("span", { class: "badge" }, "dry run") : null,
      ` run ${r.id} · ${ago(r.started_at)}${r.ended_at ? "" : " · running"} `, h("span", { class: "muted" }, r.report || "")),
    h("ul", { class: "issues" }, r.issues.map(i => h("li", { "data-issue": i.key },
      h("span", { class: `badge sev-${i.severity}` }, i.severity), " ", h("strong", {}, i.category), ` ${i.summary} `,
      h("small", { class: "muted" }, `seen by ${i.source}`), h("br"), evidence(i.evidence)))),
    r.actions.length ? h("ol", { class: "actions" }, r.actions.map(a => h("li", { "data-action": a.action, "data-target": a.target, "data-outcome": a.outcome },
      h("span", { class: `badge act-${a.outcome}` }, a.outcome), " ", h("code", {}, a.action), " ", h("code", {}, a.target), ` ${a.detail} `,
      h("br"), evidence(a.evidence)))) : h("p", { class: "muted" }, "no action taken")))));
}

// GET /api/hub/proposals (contracts/proposal.py ProposalPage): an admin accepts one (it becomes
// a goal) or rejects it with a reason, told to the next contemplation cycle.
function renderProposals() {
  const box = document.getElementById("proposals");
  const read = (state.hubReads || {}).proposals;
  if (!read) return;
  if (!read.available) { unavailable(box, read, "Proposals"); return; }
  const list = read.data.proposals;
  if (!list.length) { box.replaceChildren(h("p", { class: "muted" }, "No proposals.")); return; }
  box.replaceChildren(h("ol", { class: "proposals" }, list.map(p => h("li", { "data-proposal": p.id, "data-proposal-state": p.state },
    h("p", {}, h("span", { class: `badge ps-${p.state}` }, p.state), " ", h("strong", {}, p.title),
      h("small", { class: "muted" }, ` ${p.repo} · impact ${p.impact} · effort ${p.effort} · cycle ${p.cycle} · ${ago(p.created_at)}`)),
    h("dl", { class: "facts" }, fact("problem", p.problem, "problem"), fact("solution", p.solution, "solution"),
      fact("why now", p.why_now, "why_now"), fact("why not", p.why_not, "why_not"),
      fact("success criteria", h("ul", {}, p.success_criteria.map(c => h("li", {}, c))), "criteria")),
    p.state === "accepted" ? h("p", { class: "muted", "data-proposal-goal": p.goal_id || "" }, `accepted by ${p.decided_by}: goal `, h("code", {}, p.goal_id || "")) : null,
    p.state === "rejected" ? h("p", { class: "muted", "data-proposal-reason": "" }, `rejected by ${p.decided_by}: ${p.reason}`) : null,
    isAdmin && p.state === "pending" ? h("p", { class: "tools" },
      h("button", { class: "small", "data-proposal-action": "accept", onclick: async () => {
        if (await confirmed(`Accept "${p.title}"? The hub makes it a goal.`, `/ui/hub/proposals/${p.id}/accept`, "accept")) refreshHub();
      } }, "accept"),
      h("button", { class: "small", "data-proposal-action": "reject", onclick: async () => {
        const reason = window.prompt("Why is it rejected? (the next contemplation is told)");
        if (reason && await confirmed(`Reject "${p.title}"?`, `/ui/hub/proposals/${p.id}/reject`, "reject", { reason })) refreshHub();
      } }, "reject")) : null))));
}

// GET /api/hub/findings (contracts/scan.py FindingPage): each kept (it became a goal) or
// dropped, with the reason.
function renderFindings() {
  const box = document.getElementById("findings");
  const read = (state.hubReads || {}).findings;
  if (!read) return;
  if (!read.available) { unavailable(box, read, "Findings"); return; }
  const list = read.data.findings;
  if (!list.length) { box.replaceChildren(h("p", { class: "muted" }, "No findings.")); return; }
  box.replaceChildren(h("table", { class: "findings" },
    h("thead", {}, h("tr", {}, h("th", {}, "state"), h("th", {}, "finding"), h("th", {}, "files"), h("th", {}, "why"))),
    h("tbody", {}, list.map(f => h("tr", { "data-finding": f.id, "data-finding-state": f.state },
      h("td", {}, h("span", { class: `badge fs-${f.state}` }, f.state), h("br"), h("span", { class: `badge sev-${f.severity}` }, f.severity)),
      h("td", { class: "desc" }, h("strong", {}, f.title), h("br"), h("small", { class: "muted" }, `${f.category} · ${f.subject} · ${f.repo}`),
        f.evidence.length ? h("ul", { class: "reasons" }, f.evidence.slice(0, 5).map(e => h("li", {}, e))) : null),
      h("td", {}, h("small", {}, f.files.slice(0, 5).join(", "))),
      h("td", {}, f.reason, f.goal_id ? h("small", { class: "muted" }, h("br"), `goal ${f.goal_id}`) : null))))));
}

function renderHub() {
  const p = state.panels;
  const box = document.getElementById("hub");
  const hub = p.hub && p.hub.available ? p.hub.data : null;
  if (!hub) { unavailable(box, p.hub || {}, "Hub FSM"); document.getElementById("hub-actions").replaceChildren(); return; }
  const seconds = hub.seconds_in_state || state.hubTime;
  box.replaceChildren(
    h("p", {}, h("span", { class: `badge hub-${hub.state}`, "data-hub-state": hub.state }, hub.state),
      hub.paused ? h("span", { class: "badge paused", "data-hub-paused": "" }, "paused") : null,
      h("small", { class: "muted" }, ` since ${ago(hub.since)} · cycle ${hub.cycle}`)),
    h("p", { class: "muted" }, hub.reason || ""),
    h("p", {}, h("small", { "data-hub-leader": hub.leader || "" }, `leader: ${hub.leader || "none"}`),
      h("small", { class: "muted" }, ` · goals pending ${hub.goals_pending}, active ${hub.goals_active}`)),
    h("ul", { class: "list hub-time" }, Object.entries(seconds).map(([s, secs]) => h("li", {}, `${s}: ${Math.round(secs)} s`))),
    h("h4", {}, "Recent moves"),
    h("ol", { class: "history", id: "hub-history" }, (state.hubHistory || []).slice(0, 10).map(m =>
      h("li", {}, `${m.from_state || "∅"} → ${m.to_state}`, h("small", { class: "muted" }, ` ${m.reason} · ${m.actor} · ${ago(m.at)}`)))));
  const verb = hub.paused ? "resume" : "pause";
  document.getElementById("hub-actions").replaceChildren(isAdmin
    ? h("button", { class: "small", "data-hub-action": verb, onclick: async () => {
      if (await confirmed(`${verb} the hub?`, `/ui/hub/${verb}`, "hub")) refreshHub();
    } }, verb) : "");
}

function money(usd) { return `$${(usd || 0).toFixed(2)}`; }

function goalCost(g) {
  const tokens = `${g.cost_tokens || 0}${g.budget_tokens ? ` / ${g.budget_tokens}` : ""} tokens`;
  return `${tokens} · ${money(g.cost_usd)}${g.budget_usd ? ` / ${money(g.budget_usd)}` : ""}`;
}

function upsertGoal(g) { state.goals.set(g.id, { ...(state.goals.get(g.id) || {}), ...g }); }

function renderGoals() {
  const p = state.panels;
  const box = document.getElementById("goals");
  if (p.goals && !p.goals.available && !state.goals.size) { unavailable(box, p.goals, "Goals"); return; }
  const list = [...state.goals.values()].filter(g => g.id).sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
  if (!list.length) { box.replaceChildren(h("p", { class: "muted" }, "No goals.")); return; }
  box.replaceChildren(h("table", { class: "goals" },
    h("thead", {}, h("tr", {}, h("th", {}, "state"), h("th", {}, "goal"), h("th", {}, "tasks"), h("th", {}, "cost"), h("th", {}, "updated"))),
    h("tbody", {}, list.map(g => h("tr", { "data-goal": g.id, onclick: () => openGoal(g.id) },
      h("td", {}, h("span", { class: `badge gs-${g.state}`, "data-goal-state": g.state }, g.state)),
      h("td", { class: "desc" }, g.title, h("br"), h("small", { class: "muted" }, g.reason || "")),
      h("td", {}, h("span", { "data-goal-progress": "" }, `${g.tasks_done || 0}/${g.tasks_total || 0}`),
        h("div", { class: "bar" }, h("i", { style: `width:${g.tasks_total ? (100 * g.tasks_done) / g.tasks_total : 0}%` }))),
      h("td", { class: "muted" }, goalCost(g)),
      h("td", { class: "muted", title: g.updated_at || "" }, ago(g.updated_at)))))));
}

async function fetchGoal(id) {
  const res = await fetch(`/ui/goals/${encodeURIComponent(id)}`, { credentials: "same-origin" });
  if (!res.ok) return null;
  const body = await res.json();
  return body.goal.available ? body.goal.data : null;
}

function planLevels(plan) {
  // the plan's tasks by depth in their DAG: what may run side by side shares a column
  const tasks = plan.tasks || [];
  const keys = new Map(tasks.map((t, i) => [t.key || String(i + 1), i]));
  const depth = [];
  tasks.forEach((t, i) => {
    const deps = (t.depends_on || []).map(d => typeof d === "number" ? d - 1 : keys.get(String(d))).filter(d => d !== undefined && d < i);
    depth[i] = 1 + Math.max(-1, ...deps.map(d => depth[d]));
  });
  const cols = [];
  tasks.forEach((t, i) => { (cols[depth[i]] = cols[depth[i]] || []).push([i, t, (t.depends_on || [])]); });
  return cols;
}

function planGraph(g) {
  if (!g.plan) return g.plan_errors && g.plan_errors.length
    ? h("ul", { class: "error" }, g.plan_errors.map(e => h("li", {}, e))) : h("p", { class: "muted" }, "no plan yet");
  const byKey = new Map(g.tasks.filter(t => t.kind === "plan" && t.key.startsWith(`${g.id}:${g.attempt}:0:`)).map(t => [Number(t.key.split(":").pop()), t]));
  return h("div", { class: "plan-graph" }, planLevels(g.plan).map(col => h("div", { class: "plan-col" }, col.map(([i, t, deps]) => {
    const task = byKey.get(i);
    const st = task ? task.state : "planned";
    return h("div", { class: `plan-node st-${st}`, "data-plan-task": i + 1, "data-state": st },
      h("strong", {}, `${i + 1}. ${t.title}`), h("br"),
      h("small", {}, `${st} · ${t.tier || ""}${deps.length ? ` · after ${deps.join(", ")}` : ""}`),
      (t.verification || []).length ? h("small", { class: "muted" }, h("br"), `checks: ${t.verification.join("; ")}`) : null);
  }))));
}

function verificationReport(v) {
  const r = v.report || {};
  return h("li", { "data-verification": v.round },
    h("span", { class: `badge ${v.passed ? "st-completed" : "st-failed"}` }, v.passed ? "passed" : "gaps"),
    ` round ${v.round} · ${ago(v.at)} `, r.summary ? h("span", {}, r.summary) : null,
    h("ul", {}, (r.criteria || []).map(c => h("li", { class: c.met ? "met" : "unmet" },
      `${c.met ? "✓" : "✗"} criterion ${c.criterion}: `, h("small", {}, c.met ? c.evidence || "" : c.gap || "")))),
    (r.errors || []).length ? h("ul", { class: "error" }, r.errors.map(e => h("li", {}, e))) : null);
}

function goalActions(g) {
  if (!isAdmin) return null;
  const buttons = [];
  const after = () => openGoal(g.id);
  if (g.state === "awaiting_approval") {
    buttons.push(h("button", { class: "small", "data-goal-action": "approve", onclick: async () => {
      if (await confirmed(`Approve the plan of "${g.title}"?`, `/ui/goals/${g.id}/plan/approve`, "approve")) after();
    } }, "approve plan"));
    buttons.push(h("button", { class: "small", "data-goal-action": "reject", onclick: async () => {
      const reason = window.prompt("Why is the plan rejected? (the hub plans again with it)");
      if (reason && await confirmed(`Reject the plan of "${g.title}"?`, `/ui/goals/${g.id}/plan/reject`, "reject", { reason })) after();
    } }, "reject plan"));
  }
  if (GOAL_OPEN.has(g.state) || g.state === "needs_review") buttons.push(h("button", { class: "small", "data-goal-action": "cancel", onclick: async () => {
    if (await confirmed(`Cancel "${g.title}" and its unfinished tasks?`, `/ui/goals/${g.id}/cancel`, "cancel")) after();
  } }, "cancel goal"));
  if (GOAL_RETRY.has(g.state)) buttons.push(h("button", { class: "small", "data-goal-action": "retry", onclick: async () => {
    if (await confirmed(`Plan "${g.title}" again?`, `/ui/goals/${g.id}/retry`, "retry")) after();
  } }, "retry goal"));
  return h("p", { class: "tools" }, buttons);
}

async function openGoal(id) {
  const dlg = document.getElementById("goal-dialog");
  const box = document.getElementById("goal-detail");
  const g = await fetchGoal(id);
  state.openGoal = id;
  if (!g) { box.replaceChildren(h("p", { class: "na" }, "goal not available")); if (!dlg.open) dlg.showModal(); return; }
  upsertGoal(g); renderGoals();
  // a delivered task's risk tier is in its result (result.delivery.risk), read from the queue
  const delivered = g.tasks.filter(t => t.state === "completed" || t.state === "partial_pass");
  const tiers = new Map((await Promise.all(delivered.map(async t => {
    const d = await fetchTask(t.task_id);
    const risk = d && d.task.data.result && d.task.data.result.delivery && d.task.data.result.delivery.risk;
    return [t.task_id, risk ? risk.tier : null];
  }))).filter(([, tier]) => tier != null));
  box.replaceChildren(...[
    h("h3", {}, g.title),
    h("p", {}, h("span", { class: `badge gs-${g.state}`, id: "goal-state", "data-goal-state": g.state }, g.state), ` ${g.reason}`),
    h("p", { class: "muted" }, `${g.repo} · ${g.priority} · ${g.autonomy} · attempt ${g.attempt} · tasks ${g.tasks_done}/${g.tasks_total} · ${goalCost(g)}`),
    goalActions(g),
    h("p", {}, g.description),
    h("h4", {}, "Success criteria"),
    h("ol", {}, g.success_criteria.map(c => h("li", {}, c))),
    h("h4", {}, "Plan"),
    planGraph(g),
    h("h4", {}, "Tasks"),
    g.tasks.length ? h("ul", { class: "list", id: "goal-tasks" }, g.tasks.map(t => h("li", { "data-goal-task": t.task_id },
      h("span", { class: `badge st-${t.state}` }, t.state), " ", h("code", {}, short(t.task_id)), ` ${t.title} `, h("small", { class: "muted" }, t.kind),
      tiers.get(t.task_id) ? h("span", {}, " ", h("span", { class: `badge tier-${tiers.get(t.task_id)}`, "data-tier": String(tiers.get(t.task_id)) }, `tier ${tiers.get(t.task_id)}`)) : null))) : h("p", { class: "muted" }, "none submitted"),
    h("h4", {}, "Verifications"),
    g.verifications.length ? h("ol", { class: "verifications" }, g.verifications.map(verificationReport)) : h("p", { class: "muted" }, "not verified yet"),
    h("h4", {}, "History"),
    h("ol", { class: "history", id: "goal-history" }, g.history.map(x => h("li", {}, `${x.from_state || "∅"} → ${x.to_state}`, h("small", { class: "muted" }, ` ${x.reason} · ${x.actor} · ${new Date(x.at).toLocaleTimeString()}`)))),
  ].filter(Boolean));
  if (!dlg.open) dlg.showModal();
}

async function onGoalEvent(d) {
  const id = d.goal_id || d.id;
  if (!id) return;
  if (d.to_state) upsertGoal({ id, state: d.to_state, reason: d.reason, updated_at: d.at });
  const g = await fetchGoal(id);
  if (g) upsertGoal(g);
  renderGoals();
  if (state.openGoal === id && document.getElementById("goal-dialog").open) openGoal(id);
}

// ---- charts ------------------------------------------------------------------------------
function chart(id, series, values) {
  const el = document.getElementById(id);
  const width = Math.max(220, el.clientWidth || 300);
  const xs = state.metrics.map(m => Date.parse(m.at) / 1000);
  const data = [xs, ...values.map(f => state.metrics.map(f))];
  if (!charts[id]) {
    const colors = ["#4f9dff", "#ffb84f", "#5fd38d", "#ff6b6b"];
    charts[id] = new uPlot({ width, height: 150, legend: { show: series.length > 1, live: false }, scales: { x: { time: true } },
      // Room for the widest label: "12:34:56" under the x axis, "12,345" left of the y axis
      // (44 px clipped the latency chart's milliseconds).
      axes: [{ stroke: "#8892a6", grid: { stroke: "#8892a622" }, size: 36, font: "11px system-ui" },
        { stroke: "#8892a6", grid: { stroke: "#8892a622" }, size: 64, font: "11px system-ui" }],
      series: [{}, ...series.map((label, i) => ({ label, stroke: colors[i], width: 2, spanGaps: true }))] }, data, el);
  } else charts[id].setData(data);
}

function renderCharts() {
  chart("chart-throughput", ["completed"], [m => m.completed_per_interval]);
  chart("chart-depth", ["queued"], [m => m.queue_depth]);
  chart("chart-latency", ["wait p50", "wait p90", "run p50", "run p90"],
    [m => m.latency_ms.wait_p50, m => m.latency_ms.wait_p90, m => m.latency_ms.run_p50, m => m.latency_ms.run_p90]);
  chart("chart-failure", ["failure %"], [m => m.failure_rate_pct]);
  const last = state.metrics[state.metrics.length - 1];
  document.getElementById("kpi-failure").textContent = last && last.failure_rate_pct != null ? `${last.failure_rate_pct}%` : "–";
  renderBackup(last);
}

// The newest good backup's age and the last attempt's result, from `ops.backups`.
function renderBackup(last) {
  const value = document.getElementById("kpi-backup"), note = document.getElementById("kpi-backup-note");
  const b = last && last.backups;
  if (!b) { value.textContent = "–"; note.textContent = last ? "not readable now" : ""; return; }
  value.textContent = b.last_ok_age_s == null ? "none yet" : `${span(b.last_ok_age_s)} ago`;
  const failed = b.last && !b.last.ok;
  value.classList.toggle("bad", Boolean(failed));
  note.textContent = !b.last ? "no attempt recorded" : failed ? `last attempt failed: ${b.last.error || ""}` : "last attempt ok";
  note.title = b.last ? `${b.last.host} · ${b.last.finished_at}` : "";
}

// A length of time in seconds, coarsely (`ago` above takes a timestamp: a second function of
// that name replaced it, and every "updated" and "heartbeat" age read "NaN d").
function span(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

async function refreshMetrics() {
  const [metrics, presence] = await Promise.all([
    fetch("/ui/metrics", { credentials: "same-origin" }), fetch("/ui/presence", { credentials: "same-origin" })]);
  if (metrics.ok) { state.metrics = await metrics.json(); renderCharts(); }
  if (presence.ok) { state.presence = await presence.json(); renderAgents(); }
}

// ---- live events -------------------------------------------------------------------------
function renderAll() { renderTasks(); renderDead(); renderAgents(); renderLanes(); renderAlerts(); renderStream(); renderSide(); }

async function onEvent(ev) {
  state.seq = Math.max(state.seq, ev.seq);
  const [, , area, name] = ev.subject.split(".");
  const d = ev.data || {};
  if (area === "task" && d.task_id) await onOpenTaskEvent(ev, d);
  if (area === "task" && (name === "progress" || name === "tool_call")) {
    state.calls.push(ev); state.calls = state.calls.slice(-200); renderStream(); return;
  }
  if (area === "task" && d.task_id && d.to_state) {
    const known = state.tasks.get(d.task_id);
    upsertTask({ id: d.task_id, state: d.to_state, updated_at: d.at || ev.at });
    if (!known || !known.description || d.to_state === "dead_letter") {
      const detail = await fetchTask(d.task_id);
      if (detail) upsertTask({ ...detail.task.data, state: state.tasks.get(d.task_id).state });
    }
    renderTasks(); renderDead(); renderLanes(); renderAgents();
  } else if (area === "agent" && d.agent_id) {
    const old = state.agents.get(d.agent_id) || { id: d.agent_id };
    state.agents.set(d.agent_id, { ...old, state: d.to_state || old.state, updated_at: d.at || ev.at, ...(d.cpu_percent != null ? { cpu_percent: d.cpu_percent, ram_percent: d.ram_percent } : {}) });
    renderAgents();
  } else if (area === "alert") {
    if (name === "fired") state.alerts.set(d.rule_id, { ...d, acknowledged: false });
    else if (name === "cleared") state.alerts.delete(d.rule_id);
    else if (name === "acknowledged" && state.alerts.has(d.rule_id)) state.alerts.set(d.rule_id, { ...state.alerts.get(d.rule_id), acknowledged: true, acknowledged_by: d.by });
    renderAlerts();
  } else if (area === "hub") {
    state.hub = { ...state.hub, ...d }; await refreshHub();
  } else if (area === "goal") {
    await onGoalEvent(d);
  }
  if (area === "task" && d.goal_id && d.to_state) await onGoalEvent({ goal_id: d.goal_id });
}

let backoff = 250;
function connect() {
  const conn = document.getElementById("conn");
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws?after=${state.seq}`);
  let chain = Promise.resolve();
  ws.onopen = () => { conn.textContent = "live"; conn.className = "conn up"; backoff = 250; };
  ws.onmessage = msg => {
    const body = JSON.parse(msg.data);
    if (body.type === "event") chain = chain.then(() => onEvent(body)).catch(() => {});
  };
  ws.onclose = () => {
    conn.textContent = "reconnecting…"; conn.className = "conn down";
    setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 10000);
  };
  window.agentcomSocket = ws;
}

async function load() {
  const res = await fetch("/ui/snapshot", { credentials: "same-origin" });
  if (res.status === 401) { location.href = "/login"; return; }
  const snap = await res.json();
  state.seq = snap.seq; state.csrf = snap.csrf; state.panels = snap.panels; state.vapid = snap.vapid_public_key;
  const p = snap.panels;
  if (p.tasks.available) p.tasks.data.tasks.forEach(upsertTask);
  else document.getElementById("tasks-note").textContent = `Queue not available: ${p.tasks.detail}`;
  if (p.dead_letter.available) p.dead_letter.data.tasks.forEach(upsertTask);
  if (p.agents.available) p.agents.data.forEach(a => state.agents.set(a.id, a));
  snap.alerts.forEach(a => state.alerts.set(a.rule_id, a));
  state.calls = snap.tool_calls; state.hub = snap.hub_events || {}; state.hubTime = snap.hub_time_in_state || {};
  if (p.goals && p.goals.available) p.goals.data.goals.forEach(upsertGoal);
  state.metrics = snap.metrics; state.presence = snap.presence || {};
  renderAll(); renderCharts();
  refreshHub();
  document.getElementById("goal-dialog").addEventListener("close", () => { state.openGoal = null; });
  document.getElementById("task-dialog").addEventListener("close", () => { state.openTask = null; state.openDetail = null; });
  connect();
  setInterval(refreshMetrics, 5000);
  // a change of leader publishes no event, so the hub's panels are also read every 5 s
  setInterval(refreshHub, 5000);
  setInterval(renderAgents, 15000);
}

async function enablePush() {
  try {
    if (!("serviceWorker" in navigator) || !("PushManager" in window)) throw new Error("this browser has no Web Push");
    if ((await Notification.requestPermission()) !== "granted") throw new Error("permission denied");
    const reg = await navigator.serviceWorker.register("/static/sw.js");
    const key = Uint8Array.from(atob(state.vapid.replace(/-/g, "+").replace(/_/g, "/")), c => c.charCodeAt(0));
    const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    const res = await fetch("/ui/push/subscriptions", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": state.csrf }, body: JSON.stringify(sub.toJSON()) });
    if (!res.ok) throw new Error(`${res.status}`);
    toast("notifications on for this device");
  } catch (err) { toast(`notifications: ${err.message}`, true); }
}

window.addEventListener("resize", () => {
  for (const [id, c] of Object.entries(charts)) c.setSize({ width: Math.max(220, document.getElementById(id).clientWidth), height: 150 });
});
document.getElementById("task-filter").addEventListener("change", renderTasks);
document.getElementById("task-search").addEventListener("input", renderTasks);
const pushButton = document.getElementById("push-enable");
if (pushButton) pushButton.addEventListener("click", enablePush);
load();
