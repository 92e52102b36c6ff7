// tva-agent dashboard: plain script, no framework, no build step. Everything shown comes from the
// agent's JSON API on this same origin, with the session from the login link (agent/door.py).
// Text goes in with textContent only: nothing from the fleet is ever parsed as HTML.
"use strict";

const SESSION_KEY = "tva-agent.session";
const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);

let hostNames = {};      // peer id -> name
let playRoute = null;    // issue 17: POST route that plays an item, when this agent serves one
let refreshing = false;

// --- session -----------------------------------------------------------------------------------

function session() {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
    if (s && typeof s.session === "string" && s.expires_at_ms > Date.now()) return s.session;
  } catch (e) { /* a damaged entry: log in again */ }
  localStorage.removeItem(SESSION_KEY);
  return null;
}

async function loginFromLink() {
  const m = /(?:^#|&)login=([A-Za-z0-9_-]{16,64})/.exec(location.hash);
  if (!m) return;
  history.replaceState(null, "", location.pathname);  // the code is single-use: keep it out of history
  const r = await fetch("/login", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ code: m[1] }),
  });
  const answer = await r.json();
  if (r.ok) {
    localStorage.setItem(SESSION_KEY, JSON.stringify(answer));
  } else {
    $("login-error").textContent = `${answer.error}. ${answer.hint || ""}`;
  }
}

class LoggedOut extends Error {}

async function api(method, path, body) {
  const token = session();
  if (!token) throw new LoggedOut();
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401) {
    localStorage.removeItem(SESSION_KEY);
    throw new LoggedOut();
  }
  const data = await r.json();
  if (!r.ok) throw new Error(`${data.error || r.status}${data.hint ? ` (${data.hint})` : ""}`);
  return data;
}

// --- helpers -----------------------------------------------------------------------------------

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function badge(state) {
  return el("span", state, `badge s-${String(state).replace(/[^a-z]/g, "")}`);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "—" : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function fill(tableId, rows) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...rows);
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function name(peer) { return hostNames[peer] || (peer ? peer.slice(0, 12) + "…" : "—"); }

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 90 ? `${s} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

function names(peers) { return (peers || []).map(name).join(", ") || "—"; }

// --- views -------------------------------------------------------------------------------------

function showStatus(status) {
  $("fleet-name").textContent = status.fleet_name;
  $("summary").textContent = `${status.host_name} · ${status.members_alive ?? "?"} of ${status.members} hosts alive` +
    (status.revoked ? " · this host was revoked" : "");
  fill("components", Object.entries(status.components || {}).map(([n, c]) =>
    row([n, badge(c.state), ago(c.since_ms), c.restarts, c.reason])));
}

function showHosts(hosts, duties) {
  hostNames = Object.fromEntries(hosts.map((h) => [h.peer_id, h.name]));
  const held = {};
  for (const d of duties) {
    if (d.primary) (held[d.primary] ||= []).push(d.duty);
    for (const s of d.standbys || []) (held[s] ||= []).push(`${d.duty} (standby)`);
  }
  const byName = hosts.slice().sort((a, b) => String(a.name).localeCompare(String(b.name)));
  fill("hosts", byName.map((h) => {
    const tr = row([h.name || h.peer_id.slice(0, 12), badge(h.state), h.class, h.role, bytes(h.disk_free_bytes),
      h.holdings, (held[h.peer_id] || []).join(", "), [h.overlay_ipv4, h.overlay_ipv6].filter(Boolean).join(" ")]);
    tr.dataset.peer = h.peer_id;
    tr.dataset.state = h.state;
    if (h.self) tr.classList.add("me");
    return tr;
  }));
  const me = hosts.find((h) => h.self);
  $("invites").hidden = !(me && (me.role === "owner" || me.role === "admin"));
}

function repairs(plan) {
  const box = el("div");
  const moving = {};
  for (const t of plan.transfers || []) moving[t.target] = t;
  for (const r of plan.repairs || []) {
    const line = el("div", `→ ${name(r.target)} from ${names(r.sources)} `);
    const t = moving[r.target];
    if (t && t.bytes_total) {
      const bar = el("progress");
      bar.max = t.bytes_total;
      bar.value = t.bytes_done;
      line.appendChild(bar);
      line.appendChild(el("span", ` ${Math.floor(100 * t.bytes_done / t.bytes_total)} %`));
    }
    box.appendChild(line);
  }
  for (const t of plan.trimming || []) box.appendChild(el("div", `trimming the copy on ${t.host || name(t.target)}`));
  for (const n of plan.notes || []) box.appendChild(el("div", n, "note"));
  return box.childNodes.length ? box : "—";
}

function showCustody(plans) {
  $("custody-empty").hidden = plans.length > 0;
  fill("custody", plans.map((p) => {
    const copies = `${p.copies} of ${p.min}${p.max ? `–${p.max}` : "+"}`;
    const tr = row([p.content, badge(p.status), copies, names(p.holders), p.baton_name || name(p.baton), repairs(p)]);
    tr.dataset.content = p.content;
    tr.dataset.status = p.status;
    return tr;
  }));
}

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const [status, hosts, duties, custody] = await Promise.all([
      api("GET", "/status"), api("GET", "/hosts"), api("GET", "/duties"), api("GET", "/custody")]);
    showStatus(status);
    showHosts(hosts, duties);
    showCustody(custody);
    if (playRoute) api("GET", "/player").then(showPlayer, () => {});  // a player problem is no fleet problem
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    show(true);
  } catch (e) {
    if (e instanceof LoggedOut) show(false);
    else $("updated").textContent = `could not update: ${e.message}`;
  } finally {
    refreshing = false;
  }
}

// --- actions -----------------------------------------------------------------------------------

async function searchLibrary(ev) {
  if (ev) ev.preventDefault();
  const q = new URLSearchParams({ where: $("library-where").value, limit: "100" });
  const text = $("library-query").value.trim();
  if (text) q.set("query", text);
  try {
    const items = await api("GET", `/library/items?${q}`);
    $("library-note").textContent = items.length ? "" : "nothing found";
    fill("library", items.map((it) => {
      const where = it.local ? "this host" : names((it.holders || []).map((h) => h.peer_id));
      const title = it.title + (it.season !== null && it.season !== undefined ? ` S${it.season}E${it.episode ?? "?"}` : "");
      return row([title, it.kind, it.year, it.duration_s ? (it.duration_s < 60 ? `${Math.round(it.duration_s)} s` : `${Math.round(it.duration_s / 60)} min`) : null, where,
        playButton(it)]);
    }));
  } catch (e) {
    if (!(e instanceof LoggedOut)) $("library-note").textContent = e.message;
  }
}

// Playback (issue 17): "Play" starts the item on this agent's own player (mpv on the machine the
// agent runs on, streaming from a holder when this host has no copy). The button shows only when
// this agent's API describes the player route in /openapi.json.
const PLAY_ROUTE = "/player/play";

async function findPlayRoute() {
  try {
    const spec = await api("GET", "/openapi.json");
    playRoute = spec.paths && spec.paths[PLAY_ROUTE] && spec.paths[PLAY_ROUTE].post ? PLAY_ROUTE : null;
  } catch (e) { playRoute = null; }
}

function playButton(item) {
  if (!playRoute) return "";
  const b = el("button", "Play");
  b.type = "button";
  b.className = "play";
  b.addEventListener("click", async () => {
    try {
      const s = await api("POST", playRoute, { item: item.id });
      b.textContent = "Playing";
      showPlayer(s);
    } catch (e) {
      if (!(e instanceof LoggedOut)) $("player-note").textContent = e.message;
    }
  });
  return b;
}

function showPlayer(s) {
  const what = s.title || s.item || "";
  const at = s.position_s !== null && s.position_s !== undefined ? ` at ${Math.round(s.position_s)} s` : "";
  const via = s.via ? ` from ${s.via}` : "";
  $("player-note").textContent = s.state === "idle" ? "the player is idle" :
    `player: ${s.state}${what ? ` — ${what}` : ""}${at}${via}${s.problem ? ` (${s.problem})` : ""}`;
  $("player-note").dataset.state = s.state || "";
}

async function lookUpPeers(ev) {
  ev.preventDefault();
  const ih = $("peers-infohash").value.trim();
  if (!/^[0-9a-fA-F]{40}$/.test(ih)) { $("peers-note").textContent = "an infohash is 40 hex characters"; return; }
  try {
    const answer = await api("GET", `/peers_for/${ih}`);
    $("peers-note").textContent = `policy ${answer.policy}: ${answer.peers.length} peer(s)`;
    fill("peers", answer.peers.map((p) => row([p.host || name(p.peer_id), p.addr, p.port, p.source])));
  } catch (e) {
    if (!(e instanceof LoggedOut)) $("peers-note").textContent = e.message;
  }
}

async function makeInvite(ev) {
  ev.preventDefault();
  try {
    const inv = await api("POST", "/invites", { role: $("invite-role").value, ttl_ms: Number($("invite-ttl").value) });
    $("invite-token").hidden = false;
    $("invite-token").value = inv.invite;
    $("invite-note").textContent = `a ${inv.role} invite, valid until ${inv.expires_at}, works once`;
  } catch (e) {
    if (!(e instanceof LoggedOut)) $("invite-note").textContent = e.message;
  }
}

function show(loggedIn) {
  $("fleet").hidden = !loggedIn;
  $("login").hidden = loggedIn;
  $("logout").hidden = !loggedIn;
  if (!loggedIn) { $("fleet-name").textContent = ""; $("summary").textContent = ""; }
}

async function start() {
  $("library-form").addEventListener("submit", searchLibrary);
  $("peers-form").addEventListener("submit", lookUpPeers);
  $("invite-form").addEventListener("submit", makeInvite);
  $("logout").addEventListener("click", () => { localStorage.removeItem(SESSION_KEY); show(false); });
  // A login link opened on a page already showing this origin changes only the fragment.
  window.addEventListener("hashchange", enter);
  await enter();
}

let timer = null;

async function enter() {
  await loginFromLink();
  if (!session()) { show(false); return; }
  if (timer !== null) return;
  timer = setInterval(refresh, REFRESH_MS);
  await findPlayRoute();
  await refresh();
  searchLibrary();
}

document.addEventListener("DOMContentLoaded", start);
