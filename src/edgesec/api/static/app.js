// edgesec dashboard: talks to /api/v1 with the session cookie and the page's CSRF token.
"use strict";
const csrf = document.querySelector('meta[name="csrf"]').content;
const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => (
  {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
let devices = [];
let traffic = {};
const size = (n) => n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`;

async function api(method, path, body) {
  const opts = {method, headers: {"X-CSRF-Token": csrf}, credentials: "same-origin"};
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  const type = res.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await res.json() : await res.text();
  if (!res.ok) throw new Error(data.detail || data.error || res.statusText);
  return data;
}

function deviceRow(d) {
  const name = d.label || "—";
  return `<tr data-mac="${esc(d.mac)}"><td>${esc(name)}</td><td class="id">${esc(d.mac)}</td>` +
    `<td class="id">${esc(d.vlan)}</td><td class="id">${d.ips.map(esc).join("<br>")}</td>` +
    `<td><span class="st ${esc(d.status)}">${esc(d.status)}</span></td>` +
    `<td><input type="checkbox" class="allow" aria-label="allowed" ${d.allowed ? "checked" : ""}></td>` +
    `<td><input type="checkbox" class="nat" aria-label="NAT" ${d.nat ? "checked" : ""}></td>` +
    `<td>${d.bridges.length}</td>` + trafficCells(traffic[d.mac]) + `</tr>`;
}

function trafficCells(t) {
  if (!t) return "<td>—</td><td>—</td>";
  return `<td>↑ ${size(t.sent_bytes)} ↓ ${size(t.received_bytes)}</td>` +
    `<td><time>${esc(t.last_seen ? t.last_seen.replace("T", " ").replace("+00:00", "") : "—")}</time></td>`;
}

function renderDevices() {
  const f = $("#filter").value.trim().toLowerCase();
  const shown = devices.filter((d) => !f || [d.mac, d.label, ...d.ips].join(" ").toLowerCase().includes(f));
  $("#device-rows").innerHTML = shown.map(deviceRow).join("");
  $("#count").textContent = `${shown.length} of ${devices.length}`;
}

function renderGraph(bridges) {
  const macs = [...new Set(bridges.flatMap((b) => [b.a, b.b]))];
  const pos = {};
  macs.forEach((m, i) => {
    const a = (2 * Math.PI * i) / Math.max(macs.length, 1);
    pos[m] = [300 + 160 * Math.cos(a), 200 + 160 * Math.sin(a)];
  });
  const label = (m) => (devices.find((d) => d.mac === m) || {}).label || m;
  const edges = bridges.map((b) => `<line x1="${pos[b.a][0]}" y1="${pos[b.a][1]}" x2="${pos[b.b][0]}" ` +
    `y2="${pos[b.b][1]}" class="${b.reason === "manual" ? "manual" : "auto"}"><title>${esc(b.reason)}` +
    `${b.expires ? " (expires " + esc(b.expires) + ")" : ""}</title></line>`);
  const nodes = macs.map((m) => `<g><circle cx="${pos[m][0]}" cy="${pos[m][1]}" r="8"></circle>` +
    `<text x="${pos[m][0] + 12}" y="${pos[m][1] + 4}">${esc(label(m))}</text></g>`);
  $("#graph").innerHTML = edges.join("") + nodes.join("");
  $("#bridge-list").innerHTML = bridges.map((b) => `<li><span class="id">${esc(b.a)}</span> ↔ ` +
    `<span class="id">${esc(b.b)}</span> <small>${esc(b.reason)}${b.expires ? ", expires " + esc(b.expires) : ""}</small></li>`).join("");
}

function renderGroups(groups, rules) {
  const name = (m) => esc((devices.find((d) => d.mac === m) || {}).label || m);
  $("#group-list").innerHTML = groups.map((g) => `<li><b>${esc(g.group)}</b>: ` +
    g.members.map((m) => `<span class="id">${name(m)}</span> <button class="link" data-group="${esc(g.group)}" ` +
      `data-mac="${esc(m)}" aria-label="remove">×</button>`).join(", ") + `</li>`).join("");
  $("#access-list").innerHTML = rules.map((r) => `<li><span class="id">${name(r.from)}</span> → ` +
    `<span class="id">${name(r.to)}</span> ${esc(r.service)} <button class="link" data-from="${esc(r.from)}" ` +
    `data-to="${esc(r.to)}" data-service="${esc(r.service)}" aria-label="remove">×</button></li>`).join("");
}

async function groupAction(fn) {
  try { await fn(); $("#group-error").textContent = ""; refreshSoon(); }
  catch (err) { $("#group-error").textContent = String(err.message); }
}

async function refresh() {
  [devices, traffic] = await Promise.all([api("GET", "/api/v1/devices"), api("GET", "/api/v1/traffic")]);
  renderDevices();
  renderGraph(await api("GET", "/api/v1/bridges"));
  renderGroups(await api("GET", "/api/v1/groups"), await api("GET", "/api/v1/access"));
  const st = await api("GET", "/api/v1/status");
  $("#service-rows").innerHTML = st.services.map((s) => `<tr><td>${esc(s.name)}</td>` +
    `<td><span class="st ${esc(s.state)}">${esc(s.state)}</span></td><td>${esc(s.detail)}</td></tr>`).join("");
}

let pending = null;
function refreshSoon() {
  if (!pending) pending = setTimeout(() => { pending = null; refresh().catch(showError); }, 200);
}

function showError(err) {
  const li = document.createElement("li");
  li.className = "error";
  li.textContent = String(err.message || err);
  $("#event-list").prepend(li);
}

$("#device-rows").addEventListener("change", async (e) => {
  const mac = e.target.closest("tr").dataset.mac;
  const field = e.target.classList.contains("nat") ? "nat" : "allowed";
  try {
    await api("PATCH", `/api/v1/devices/${encodeURIComponent(mac)}`, {[field]: e.target.checked});
  } catch (err) { showError(err); e.target.checked = !e.target.checked; }
});
$("#filter").addEventListener("input", renderDevices);

$("#member-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  groupAction(() => api("PUT", `/api/v1/groups/${encodeURIComponent(f.get("group"))}/members/${encodeURIComponent(f.get("mac"))}`));
});
$("#access-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  groupAction(() => api("POST", "/api/v1/access", {from: f.get("from"), to: f.get("to"), service: f.get("service") || "any"}));
});
$("#group-list").addEventListener("click", (e) => {
  const b = e.target.closest("button");
  if (b) groupAction(() => api("DELETE", `/api/v1/groups/${encodeURIComponent(b.dataset.group)}/members/${encodeURIComponent(b.dataset.mac)}`));
});
$("#access-list").addEventListener("click", (e) => {
  const b = e.target.closest("button");
  if (b) groupAction(() => api("DELETE", "/api/v1/access?" + new URLSearchParams({from: b.dataset.from, to: b.dataset.to, service: b.dataset.service})));
});

$("#ticket-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  try {
    const t = await api("POST", "/api/v1/tickets", {label: form.get("label"), vlan: Number(form.get("vlan"))});
    const svg = await api("POST", "/ui/qr", {data: t.wifi_qr});
    $("#ticket").innerHTML = `<p>Passphrase (shown once): <code class="id">${esc(t.passphrase)}</code>, ` +
      `network <b>${esc(t.ssid)}</b>, valid until ${esc(t.expires)}</p><div class="qr">${svg}</div>`;
  } catch (err) { $("#ticket").textContent = String(err.message); }
});

$("#explain-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const q = new URLSearchParams({src: form.get("src"), dst: form.get("dst")});
  try {
    const x = await api("GET", `/api/v1/explain?${q}`);
    $("#explanation").innerHTML = `<p class="${x.allowed ? "ok" : "failed"}">${x.allowed ? "Allowed" : "Blocked"}` +
      ` (rule <code>${esc(x.rule || "none")}</code>)</p><ul>${x.reasons.map((r) => `<li>${esc(r)}</li>`).join("")}</ul>` +
      (x.remedies.length ? `<p>To allow it: ${x.remedies.map((r) => `<code>${esc(r)}</code>`).join(" and ")}</p>` : "");
  } catch (err) { $("#explanation").textContent = String(err.message); }
});

const stream = new EventSource("/api/v1/events");
stream.onmessage = (msg) => {
  const ev = JSON.parse(msg.data);
  const li = document.createElement("li");
  li.innerHTML = `<time>${esc(ev.ts)}</time> <b>${esc(ev.kind)}</b> <span class="id">${esc(ev.mac)}</span>`;
  $("#event-list").prepend(li);
  while ($("#event-list").children.length > 200) $("#event-list").lastChild.remove();
  refreshSoon();
};
refresh().catch(showError);
