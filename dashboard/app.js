// comfyhost dashboard: a dependency-free single page over the host API
// (`<prefix>/comfyhost/api`). Served by the host; no build step. Signed-in admins only: the
// session cookie is HttpOnly, and every change carries the session's CSRF token.

const BASE = location.pathname.replace(/\/[^/]*$/, ""); // <prefix>/comfyhost
const API = `${BASE}/api`;
const state = { me: null, csrf: null, sources: [], timers: [] };

// ----- helpers --------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function toast(text, isError = false) {
  const m = h("div", { class: `msg${isError ? " err" : ""}` }, text);
  document.getElementById("toast").append(m);
  setTimeout(() => m.remove(), isError ? 8000 : 4000);
}

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body, { form } = {}) {
  const headers = {};
  if (state.csrf && method !== "GET") headers["x-csrf-token"] = state.csrf;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const r = await fetch(`${API}${path}`, { method, headers, body: payload, credentials: "same-origin" });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (r.status === 401 && path !== "/session") {
    state.me = null;
    showLogin("Your session ended; sign in again.");
    throw new ApiError(r.status, data);
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

function badge(s) {
  return h("span", { class: `badge state-${String(s).toLowerCase()}` }, s);
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "—";
  return new Date(ms).toLocaleString();
}

function dur(a, b) {
  if (!a || !b) return "—";
  const s = (b - a) / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} m ${Math.round(s % 60)} s`;
}

// Raw detail one click away: a closed disclosure ("Details ▸") holding `raw` as text.
function details(raw, label = "Details") {
  if (raw === null || raw === undefined || raw === "") return null;
  const text = typeof raw === "string" ? raw : JSON.stringify(raw, null, 2);
  return h("details", { class: "raw" }, h("summary", {}, label), h("pre", {}, text));
}

// What an empty list will show and how to fill it, in place of bare headers.
function emptyRow(columns, text, ...more) {
  return h("tr", { class: "empty" }, h("td", { colspan: columns, class: "empty-state" }, text, ...more));
}

// An in-page confirmation (not window.confirm): resolves true when the admin confirms.
function confirmDialog(title, text, yes) {
  return new Promise((resolve) => {
    const prev = document.activeElement;
    const done = (ok) => { box.remove(); prev?.focus?.(); resolve(ok); };
    const no = h("button", { id: "confirm-no", onclick: () => done(false) }, "Cancel");
    const box = h("div", { id: "confirm-dialog", class: "modal-backdrop", onkeydown: (e) => { if (e.key === "Escape") done(false); } },
      h("div", { class: "modal panel", role: "dialog", "aria-modal": "true", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
        h("h3", { id: "confirm-title" }, title),
        h("p", { id: "confirm-text" }, text),
        h("p", {}, h("button", { id: "confirm-yes", class: "danger-primary", onclick: () => done(true) }, yes), " ", no)));
    document.body.append(box);
    no.focus();
  });
}

// A job's error as a person reads it: ComfyUI's exception (type, first line, node) or the
// refusal's message, never the raw JSON (kept behind "Details").
function jobError(j) {
  if (!j.error_json) return null;
  let e;
  try { e = JSON.parse(j.error_json); } catch { return { text: firstLine(j.error_json), raw: j.error_json }; }
  return { text: describeError(e) || "failed (see details)", raw: e };
}

function firstLine(s) {
  const line = String(s ?? "").split("\n").find((l) => l.trim()) ?? "";
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

function describeError(e) {
  if (e === null || e === undefined) return "";
  if (typeof e === "string") return firstLine(e);
  // ComfyUI's history: [["execution_error", {node_id, node_type, exception_type, exception_message}], ...]
  if (Array.isArray(e.messages)) {
    const ex = e.messages.find((m) => Array.isArray(m) && m[0] === "execution_error")?.[1];
    if (ex) return `${ex.exception_type ? `${ex.exception_type}: ` : ""}${firstLine(ex.exception_message)}${ex.node_id ? ` (node ${ex.node_id}${ex.node_type ? ` ${ex.node_type}` : ""})` : ""}`;
    if (e.messages.some((m) => Array.isArray(m) && m[0] === "execution_interrupted")) return "Interrupted";
  }
  // A refusal in ComfyUI's shape: {error: {type, message, details}, node_errors: {id: {errors, class_type}}}
  const body = e.answer ?? e;
  if (body && typeof body === "object" && body.error) {
    const err = body.error;
    const message = typeof err === "string" ? firstLine(err) : firstLine(err.message ?? err.type ?? "");
    const more = typeof err === "object" && err.details ? firstLine(err.details) : "";
    // ComfyUI repeats the message in `details` for some refusals: said once.
    let text = more && !message.includes(more) && !more.includes(message) ? `${message} — ${more}` : (more.length > message.length ? more : message);
    const [id, node] = Object.entries(body.node_errors ?? {})[0] ?? [];
    const ne = node?.errors?.[0];
    if (ne) text += ` (node ${id}${node.class_type ? ` ${node.class_type}` : ""}: ${firstLine(ne.message)}${ne.details ? ` — ${firstLine(ne.details)}` : ""})`;
    return text;
  }
  if (e.message) return firstLine(e.message);
  if (e.answer && typeof e.answer === "string") return firstLine(e.answer);
  return e.type ? String(e.type).replaceAll("_", " ") : "";
}

// A plugin failure: the message first, wasm frames (`… (at a <- b)`) behind "Details".
function pluginError(text) {
  const t = String(text ?? "");
  const at = t.indexOf(" (at ");
  const summary = at > 0 ? t.slice(0, at) : firstLine(t);
  const raw = at > 0 ? t.slice(at + 5).replace(/\)$/, "").split(" <- ").join("\n") : (t.includes("\n") ? t : null);
  return [summary, details(raw, "Trace")];
}

function closeSources() {
  for (const s of state.sources) s.close();
  state.sources = [];
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
}

function fmtBin(b) {
  if (b === null || b === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = b;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function fmtSecs(s) {
  if (s === null || s === undefined) return "—";
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// A small line chart of `values` (nulls are gaps dropped), scaled to [0, max].
function sparkline(values, max) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 200 48");
  svg.setAttribute("preserveAspectRatio", "none");
  const pts = values.map((v, i) => [i, v]).filter(([, v]) => typeof v === "number");
  const top = max ?? Math.max(1, ...pts.map(([, v]) => v));
  const n = Math.max(1, values.length - 1);
  const line = document.createElementNS(NS, "polyline");
  line.setAttribute("points", pts.map(([i, v]) => `${((i / n) * 200).toFixed(1)},${(46 - (v / top) * 44).toFixed(1)}`).join(" "));
  svg.append(line);
  return svg;
}

// The low-disk banner on every page.
async function refreshBanner() {
  const b = document.getElementById("banner");
  try {
    const s = await api("GET", "/system");
    const low = s.low_disk?.low;
    b.hidden = !low;
    if (low) {
      b.replaceChildren(`Low disk space: ${fmtBin(low.free_bytes)} free on ${low.mount_point} (threshold ${fmtBin(low.threshold_bytes)}). `,
        "New outputs may fail to save and preset downloads that would not leave the threshold free are refused. ",
        h("a", { href: "#system" }, "System"));
    }
  } catch { /* signed out: the login page says so */ }
}

function live(path, handlers) {
  const src = new EventSource(`${API}${path}`, { withCredentials: true });
  for (const [ev, fn] of Object.entries(handlers)) {
    src.addEventListener(ev, (e) => {
      try { fn(JSON.parse(e.data)); } catch (err) { console.warn("[dashboard] event", err); }
    });
  }
  state.sources.push(src);
  return src;
}

// ----- sign-in ----------------------------------------------------------------------------------

function showLogin(message) {
  closeSources();
  document.getElementById("nav").hidden = true;
  document.getElementById("whoami").textContent = "";
  const err = h("p", { id: "login-error", class: "error-text" }, message ?? "");
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", size: 40, placeholder: "admin token" });
  const form = h("form", { id: "login", class: "panel login", onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = "";
    err.className = "error-text";
    try {
      const me = await api("POST", "/session", { token: input.value });
      if (!me.is_admin) {
        // A student's token is right, just not for here: send them to ComfyUI, signed in.
        err.className = "muted";
        err.replaceChildren(`Signed in as ${me.user}. This dashboard is for the workshop admin; your place is ComfyUI: `,
          h("a", { id: "to-comfyui", href: new URL("../", location.href).pathname }, "open ComfyUI"), ".");
        return;
      }
      state.me = me;
      state.csrf = me.csrf_token;
      start();
    } catch (e2) {
      err.textContent = e2.message;
    }
  } },
  h("h2", {}, "Sign in"),
  h("p", { class: "muted" }, "Use the admin token printed when the host first started (or COMFYHOST_ADMIN_TOKEN)."),
  h("label", { for: "token" }, "Admin token"), input, h("p", {}, h("button", { class: "primary", type: "submit" }, "Sign in")), err);
  document.getElementById("main").replaceChildren(form);
  input.focus();
}

async function start() {
  document.getElementById("nav").hidden = false;
  document.getElementById("whoami").replaceChildren(
    `${state.me.user} `,
    h("button", { id: "logout", onclick: async () => { await api("DELETE", "/session").catch(() => {}); state.me = null; state.csrf = null; showLogin(); } }, "Sign out"),
  );
  if (!location.hash) location.hash = "#plugins";
  else route();
  refreshBanner();
  if (!state.bannerTimer) state.bannerTimer = setInterval(refreshBanner, 15000);
}

// ----- pages ------------------------------------------------------------------------------------

const pages = { plugins, install, comfyui, system, gpu, jobs, backends, models, outputs, users, room, activity };

async function route() {
  if (!state.me) return;
  closeSources();
  const name = (location.hash || "#plugins").slice(1).split("/")[0];
  // Pages in their own files (trust.js) register in window.comfyhostPages.
  const page = pages[name] ?? window.comfyhostPages?.[name] ?? plugins;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === `#${name}`);
  const main = document.getElementById("main");
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  try {
    await page(main);
  } catch (e) {
    if (e.status !== 401) main.replaceChildren(h("p", { class: "error-text" }, `Could not load: ${e.message}`));
  }
}

window.addEventListener("hashchange", route);
// Helpers for the pages in their own files.
window.comfyhost = { api, h, toast, badge, route };

// Plugins -----------------------------------------------------------------------------------------

async function plugins(main) {
  const list = await api("GET", "/plugins");
  const selected = decodeURIComponent(location.hash.split("/")[1] ?? "") || list[0]?.id;
  const rows = list.map((p) => h("tr", { "data-plugin": p.id, class: p.id === selected ? "selected" : null },
    h("td", {}, h("a", { href: `#plugins/${encodeURIComponent(p.id)}` }, p.id)),
    h("td", {}, p.version || "—"),
    h("td", { class: "mono", title: p.sha256 }, (p.sha256 || "").slice(0, 12)),
    h("td", {}, p.hooks.join(", ")),
    h("td", { class: "signer" }, p.signer?.key_id ? `${p.signer.key_name ?? "untrusted key"} · ${p.signer.key_id}` : h("span", { class: "muted" }, "unsigned")),
    h("td", {}, badge(p.state.state), p.state.error ? h("div", { class: "error-text" }, ...pluginError(p.state.error)) : null),
    h("td", {}, `${p.stats.calls} calls · ${p.stats.failures} failed`),
    h("td", {}, p.stats.p50_us == null ? "—" : `p50 ${p.stats.p50_us} µs · p99 ${p.stats.p99_us} µs`),
    h("td", {}, h("button", { class: "toggle", "data-plugin": p.id, onclick: () => toggle(p) }, p.enabled ? "Disable" : "Enable")),
  ));
  const detail = h("div", { id: "plugin-detail" });
  const count = (st) => list.filter((x) => x.state.state === st).length;
  const parts = [[count("enabled"), "running"], [count("disabled"), "switched off"], [count("needs_approval"), "waiting for your approval"],
    [count("tripped"), "stopped after repeated faults"], [count("broken"), "broken (see its error)"]].filter(([n]) => n > 0);
  main.replaceChildren(
    h("h2", {}, "Plugins"),
    list.length ? h("p", { id: "plugins-summary" }, `${list.length} plugin${list.length === 1 ? "" : "s"}: ${parts.map(([n, t]) => `${n} ${t}`).join(", ")}.`) : null,
    h("div", { class: "panel" },
      h("table", { id: "plugins-table" },
        h("thead", {}, h("tr", {}, ["Plugin", "Version", "SHA-256", "Hook", "Signed by", "State", "Calls", "Latency", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows.length ? rows : emptyRow(9, "No plugins yet. Plugins you install (", h("a", { href: "#install" }, "Install"),
          ") or drop into the plugins directory (then \u201cRescan\u201d) appear here with their state, calls and latency."))),
      h("button", { onclick: async () => { const r = await api("POST", "/plugins/rescan"); toast(`Rescanned: ${r.loaded.length} loaded, ${r.removed.length} removed`); route(); } }, "Rescan drop-in directory")),
    detail);
  const p = list.find((x) => x.id === selected);
  if (p) renderPlugin(detail, p);
}

async function toggle(p) {
  try {
    await api("POST", `/plugins/${encodeURIComponent(p.id)}/${p.enabled ? "disable" : "enable"}`);
    toast(`${p.id} ${p.enabled ? "disabled" : "enabled"}`);
  } catch (e) {
    toast(`${p.id}: ${e.message}`, true);
  }
  route();
}

// The origin of a URL as the host compares it: scheme://host:port, default port filled in.
function originOf(url) {
  try {
    const u = new URL(url);
    const port = u.port || (u.protocol === "https:" ? "443" : u.protocol === "http:" ? "80" : "");
    return `${u.protocol}//${u.hostname.toLowerCase()}:${port}`;
  } catch { return ""; }
}

// A preset a plugin proposes, shown in full (every URL, size and hash) before the admin
// confirms; files from origins not allowed for downloads are marked and block the install.
function presetOffer(p, allowed, poll) {
  const rows = p.files.map((f) => {
    const ok = allowed.includes(originOf(f.url));
    return h("tr", { "data-file": f.url },
      h("td", {}, `${f.folder}/${f.name}`), h("td", { class: "url" }, f.url), h("td", {}, fmtBytes(f.size)),
      h("td", { class: "hash" }, f.sha256 || "(no hash: not verified)"),
      h("td", {}, ok ? badge("allowed") : badge("origin not allowed")));
  });
  const blocked = p.files.some((f) => !allowed.includes(originOf(f.url)));
  return h("div", { class: "preset panel" },
    h("p", {}, `Preset ${p.name} (${fmtBytes(p.total_bytes)}) provides ${p.provides.join(", ")}, proposed by a plugin:`),
    h("table", {}, h("thead", {}, h("tr", {}, ["File", "URL", "Size", "sha256", "Origin"].map((t) => h("th", {}, t)))), h("tbody", {}, rows)),
    blocked ? h("p", { class: "error-text" }, `Some files come from origins not allowed for downloads (allowed: ${allowed.join(", ") || "none"}).`) : null,
    h("button", { class: "primary install-preset", "data-preset": p.id, disabled: blocked ? "disabled" : null, onclick: async () => {
      try {
        await api("POST", "/models/install", { preset_id: p.id, preset_name: p.name, files: p.files });
        toast(`Installing ${p.name}`);
        poll();
      } catch (x) { toast(x.message, true); }
    } }, `Install these ${p.files.length} files`));
}

function capText(c) {
  if (c.kind === "http") return `network: ${c.origin}`;
  if (c.kind === "dir") return `directory: ${c.path} → ${c.guest} (${c.access})`;
  if (c.kind === "secret") return `secret: ${c.name}`;
  if (c.kind === "code") return `run component sha256 ${c.sha256}`;
  if (c.kind === "signer") return c.key_id ? `signed by key ${c.key_id}` : "unsigned";
  return JSON.stringify(c);
}

function isGranted(g, c) {
  if (c.kind === "http") return g.http.includes(c.origin);
  if (c.kind === "secret") return g.secrets.includes(c.name);
  if (c.kind === "dir") return g.dirs.some((d) => d.path === c.path && d.guest === c.guest && d.access === c.access);
  return false;
}

// Grants name the component the admin is looking at: if another one was swapped in since the
// page loaded, the host refuses them.
function withCap(g, c, on, sha256) {
  const next = { http: [...g.http], dirs: [...g.dirs], secrets: [...g.secrets], code_sha256: sha256 };
  if (c.kind === "http") next.http = on ? [...new Set([...next.http, c.origin])] : next.http.filter((o) => o !== c.origin);
  if (c.kind === "secret") next.secrets = on ? [...new Set([...next.secrets, c.name])] : next.secrets.filter((n) => n !== c.name);
  if (c.kind === "dir") {
    next.dirs = next.dirs.filter((d) => !(d.path === c.path && d.guest === c.guest));
    if (on) next.dirs.push({ path: c.path, guest: c.guest, access: c.access });
  }
  return next;
}

async function renderPlugin(box, p) {
  const code = p.pending.find((c) => c.kind === "code" || c.kind === "signer");
  const codeApproval = code
    ? h("div", { class: "panel", id: "code-approval" },
      h("p", { class: "error-text" }, code.kind === "signer"
        ? `This version is ${code.key_id ? `signed by key ${code.key_id}` : "unsigned"}, not by the key approved for ${p.id} (${code.approved_key_id}). It does not run, and nothing granted applies, until you approve it.`
        : `This component (sha256 ${code.sha256}) is not the one approved for ${p.id}` +
        `${code.approved_sha256 ? ` (sha256 ${code.approved_sha256})` : ""}. It does not run, and nothing granted applies, until you approve it.`),
      h("button", { class: "primary approve-code", onclick: async () => {
        try {
          await api("PUT", `/plugins/${encodeURIComponent(p.id)}/grants`, { ...p.granted, code_sha256: p.sha256 });
          toast(`Approved component ${p.sha256.slice(0, 12)}… of ${p.id}`);
        } catch (e) { toast(e.message, true); }
        route();
      } }, "Approve this component"))
    : null;
  const about = p.about ?? [];
  const caps = p.requested.length === 0
    ? h("p", { class: "muted" }, "Asks for no capabilities: no network, files or secrets.")
    : h("table", { id: "capabilities" },
      h("thead", {}, h("tr", {}, ["Requested", "What it is for", "Granted", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, p.requested.map((c, i) => {
        const granted = isGranted(p.granted, c);
        const a = about[i] ?? {};
        return h("tr", { "data-capability": capText(c) },
          h("td", {}, capText(c), a.optional ? h("span", { class: "muted" }, " (optional)") : null),
          h("td", { class: "reason" }, a.reason ?? h("span", { class: "muted" }, "(no reason given)")),
          h("td", {}, granted ? badge("granted") : a.optional ? badge("not granted") : badge("pending")),
          h("td", {}, h("button", { class: granted ? "revoke danger" : "approve primary", onclick: async () => {
            try {
              await api("PUT", `/plugins/${encodeURIComponent(p.id)}/grants`, withCap(p.granted, c, !granted, p.sha256));
              toast(`${granted ? "Revoked" : "Approved"} ${capText(c)}`);
            } catch (e) { toast(e.message, true); }
            route();
          } }, granted ? "Revoke" : "Approve")));
      })));
  const b = p.breaker;
  const breaker = b
    ? h("p", { id: "breaker" }, "Crash-loop breaker: ", b.tripped ? badge("tripped") : badge("ok"),
      ` ${b.failures_in_window}/${b.max_failures} faults in ${b.window_ms / 1000} s · ${b.consecutive}/${b.max_consecutive} in a row · ${(b.fault_time_ms / 1000).toFixed(1)}/${b.max_fault_time_ms / 1000} s spent in faults`,
      b.tripped && b.reason ? h("span", { class: "muted" }, ` (tripped: ${b.reason.replaceAll("_", " ")})`) : null)
    : null;
  // One "last error", with its time; gone once the plugin succeeds again.
  const lastError = p.last_error
    ? h("div", { id: "last-error", class: "error-text" }, `Last error${b?.last_error_at_ms ? ` (${fmtMs(b.last_error_at_ms)})` : ""}: `, ...pluginError(p.last_error))
    : null;
  const logs = h("pre", { id: "plugin-logs", tabindex: 0, "aria-label": "Plugin log" }, "…");
  box.replaceChildren(h("div", { class: "grid" },
    h("div", { class: "panel" },
      h("h3", {}, `${p.name || p.id} ${p.version}`),
      h("p", { class: "muted" }, `priority ${p.priority} · ${p.dir}`),
      h("p", { class: "muted" }, `sha256 ${p.sha256}`),
      codeApproval,
      p.previous_version ? h("p", { id: "rollback" }, p.previous_version === p.version
        ? `Previous component: the same version ${p.previous_version} with other code (sha256 ${(p.previous_sha256 ?? "").slice(0, 12)}…) `
        : `Previous version ${p.previous_version} `, h("button", { onclick: async () => { await api("POST", `/plugins/${encodeURIComponent(p.id)}/rollback`).catch((e) => toast(e.message, true)); route(); } }, "Roll back")) : null,
      lastError,
      breaker,
      h("h4", {}, "Capabilities"), caps),
    h("div", { class: "panel" }, h("h4", {}, "Configuration"), configForm(p))),
    h("div", { class: "panel" }, h("h4", {}, "Logs"), logs));
  try {
    const recs = await api("GET", `/plugins/${encodeURIComponent(p.id)}/logs`);
    logs.textContent = recs.length ? recs.map((r) => `${new Date(r.ts_ms).toLocaleTimeString()} ${r.level} ${r.prompt_id ? `[${r.prompt_id}] ` : ""}${r.message}`).join("\n") : "(no records)";
  } catch (e) {
    logs.textContent = e.message;
  }
}

const SECRET_NAME = /(secret|password|token|api[_-]?key|credential)/i;

function isSecret(name, schema) {
  return schema?.format === "password" || schema?.writeOnly === true || SECRET_NAME.test(name);
}

// The allowed values of a string property: its `enum`, or the host's `x-choices` extension
// (listed values plus the keys the admin defined under another property, e.g. custom styles).
function choicesOf(prop, config) {
  if (Array.isArray(prop.enum)) return prop.enum.filter((v) => v !== null);
  const x = prop["x-choices"];
  if (!x) return null;
  const keys = x.keys_of && config[x.keys_of] && typeof config[x.keys_of] === "object" ? Object.keys(config[x.keys_of]) : [];
  return [...new Set([...(x.values ?? []), ...keys])];
}

// A form generated from the plugin's JSON Schema (top-level properties): enums as selects,
// nullable fields that can be left empty (= null), defaults shown; nested values are edited
// as JSON. The host validates again; each of its messages is shown next to its field.
function configForm(p) {
  const schema = p.config_schema;
  const config = p.config ?? {};
  if (!schema || !schema.properties) return h("p", { class: "muted" }, "This plugin has no configuration.");
  const fields = [];
  const form = h("form", { id: "config-form", novalidate: true });
  for (const [name, prop] of Object.entries(schema.properties)) {
    const value = name in config ? config[name] : prop.default;
    const id = `cfg-${name}`;
    const types = Array.isArray(prop.type) ? prop.type : prop.type ? [prop.type] : [];
    const nullable = types.includes("null") || (Array.isArray(prop.enum) && prop.enum.includes(null));
    const type = types.find((t) => t !== "null");
    const choices = (type === "string" || prop.enum) ? choicesOf(prop, config) : null;
    let input;
    if (choices) {
      const opts = choices.map((v) => h("option", { value: JSON.stringify(v), selected: JSON.stringify(v) === JSON.stringify(value) }, String(v)));
      if (nullable) opts.unshift(h("option", { value: "null", selected: value === null || value === undefined }, "(none)"));
      input = h("select", { id, name }, opts);
      fields.push({ name, read: () => JSON.parse(input.value) });
    } else if (type === "boolean") {
      input = h("input", { id, name, type: "checkbox", checked: value === true });
      fields.push({ name, read: () => input.checked });
    } else if (type === "integer" || type === "number") {
      input = h("input", { id, name, type: "number", step: type === "integer" ? "1" : "any", min: prop.minimum, max: prop.maximum, value: value ?? "", placeholder: nullable ? "(none)" : "" });
      fields.push({ name, read: () => (input.value === "" ? (nullable ? null : undefined) : Number(input.value)) });
    } else if (type === "string") {
      const secret = isSecret(name, prop);
      input = h("input", { id, name, type: secret ? "password" : "text", value: value ?? "", pattern: prop.pattern, autocomplete: secret ? "new-password" : "off", size: 40, placeholder: nullable ? "(none)" : "" });
      fields.push({ name, read: () => (input.value === "" ? (nullable ? null : value === undefined ? undefined : "") : input.value) });
    } else {
      // Objects and arrays as JSON; a nullable one left empty is null (not `{}`).
      const text = value === null || value === undefined ? (nullable ? "" : JSON.stringify(type === "array" ? [] : {}, null, 2)) : JSON.stringify(value, null, 2);
      input = h("textarea", { id, name, placeholder: nullable ? "(none: leave empty)" : "" }, text);
      fields.push({ name, read: () => (input.value.trim() === "" ? (nullable ? null : undefined) : JSON.parse(input.value)) });
    }
    const err = h("div", { id: `cfg-err-${name}`, class: "field-error", "data-field": name });
    form.append(h("label", { for: id }, name, prop.description ? h("span", { class: "muted" }, ` — ${prop.description}`) : null), input, err);
  }
  const errors = h("div", { id: "config-errors", class: "field-error" });
  form.append(h("p", {}, h("button", { class: "primary", type: "submit" }, "Save configuration")), errors);
  const clear = () => { for (const e of form.querySelectorAll(".field-error")) e.textContent = ""; };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clear();
    const next = {};
    for (const f of fields) {
      try {
        const v = f.read();
        if (v !== undefined) next[f.name] = v;
      } catch (err) {
        form.querySelector(`#cfg-err-${CSS.escape(f.name)}`).textContent = `Not valid JSON: ${err.message}`;
        errors.textContent = "Fix the fields marked above.";
        return;
      }
    }
    try {
      await api("PUT", `/plugins/${encodeURIComponent(p.id)}/config`, next);
      toast(`Configuration of ${p.id} saved`);
      route();
    } catch (err) {
      // "invalid config: /llm: ...; /default_style: ..." -> each message under its field.
      const msg = String(err.message).replace(/^invalid config:\s*/, "");
      const general = [];
      for (const part of msg.split("; ")) {
        const m = /^\/([^/:]+)[^:]*:/.exec(part);
        const slot = m && form.querySelector(`#cfg-err-${CSS.escape(m[1])}`);
        if (slot) {
          slot.textContent = slot.textContent ? `${slot.textContent}; ${part}` : part;
        } else {
          general.push(part);
        }
      }
      errors.textContent = general.length ? general.join("; ") : "Not saved: see the messages next to the fields.";
      form.querySelector(".field-error:not(:empty)")?.scrollIntoView({ block: "center" });
    }
  });
  return form;
}

// Install -----------------------------------------------------------------------------------------

async function install(main) {
  const out = h("div", { id: "install-result" });
  const form = h("form", { id: "install-form", class: "panel", onsubmit: async (e) => {
    e.preventDefault();
    out.textContent = "Installing (compiling the component)…";
    try {
      const info = await api("POST", "/plugins", undefined, { form: new FormData(form) });
      out.replaceChildren(h("p", {}, `Installed ${info.id} ${info.version}: `, badge(info.state.state)),
        info.state.state === "needs_approval" ? h("p", {}, "It asks for capabilities; approve them on ", h("a", { href: `#plugins/${encodeURIComponent(info.id)}` }, "its page"), ".") : null);
    } catch (err) {
      out.replaceChildren(h("p", { class: "error-text" }, err.message));
    }
  } },
  h("label", { for: "manifest" }, "plugin.toml"), h("input", { id: "manifest", name: "manifest", type: "file", accept: ".toml", required: true }),
  h("label", { for: "wasm" }, "Component (.wasm)"), h("input", { id: "wasm", name: "wasm", type: "file", accept: ".wasm", required: true }),
  h("label", { for: "schema" }, "Config schema (optional)"), h("input", { id: "schema", name: "schema", type: "file", accept: ".json" }),
  h("label", { for: "signature" }, "Signature plugin.minisig (optional; see the Trust page)"), h("input", { id: "signature", name: "signature", type: "file" }),
  h("label", { for: "public_key" }, "Signer's public key plugin.pub (optional)"), h("input", { id: "public_key", name: "public_key", type: "file" }),
  h("p", {}, h("button", { class: "primary", type: "submit" }, "Install")));
  main.replaceChildren(h("h2", {}, "Install a plugin"), h("p", { class: "muted" },
    "An update that asks for more capabilities than were granted stays disabled until you approve them."), form, out);
}

// ComfyUI -----------------------------------------------------------------------------------------

async function comfyui(main) {
  const st = await api("GET", "/comfyui");
  const stateEl = h("span", { id: "comfy-state" }, badge(st.state));
  const detail = h("div", { id: "comfy-detail" });
  const logs = h("pre", { id: "comfy-logs", tabindex: 0, "aria-label": "ComfyUI log" });
  // Operations and state changes as they happen (a restart of a fast ComfyUI takes well under
  // a second; this list keeps every step visible).
  const events = h("ol", { id: "comfy-events", class: "muted" });
  const describe = (e) => {
    const at = new Date(e.at_unix_ms ?? Date.now()).toLocaleTimeString();
    if (e.type === "state_changed") return `${at} ${e.previous} → ${e.state}${e.reason ? ` (${e.reason})` : ""}`;
    if (e.type === "op_started") return `${at} ${e.kind} requested (operation ${e.op})`;
    if (e.type === "op_finished") return `${at} ${e.kind} ${e.ok ? "done" : "failed"}: ${e.message}`;
    if (e.type === "spawned") return `${at} started pid ${e.pid}`;
    return `${at} ${e.type}`;
  };
  const showStatus = (s) => {
    stateEl.replaceChildren(badge(s.state));
    detail.replaceChildren(
      h("p", {}, `pid ${s.pid ?? "—"} · restarts ${s.restarts ?? 0}`, s.reason ? h("div", { class: "error-text" }, s.reason) : null),
      h("label", {}, "Command line"), h("pre", { id: "comfy-cmd", tabindex: 0, "aria-label": "Command line" }, (s.command_line ?? []).join(" ")));
  };
  showStatus(st);
  // Restart and stop interrupt work: confirmed first, naming the jobs they end.
  const op = (what) => h("button", { class: what === "stop" ? "danger" : "", id: `comfy-${what}`, onclick: async () => {
    if (what !== "start") {
      const affected = await interruptedJobs();
      const verb = what === "restart" ? "Restart" : "Stop";
      const ok = await confirmDialog(`${verb} ComfyUI?`,
        `${affected} Open ComfyUI pages lose their connection ${what === "restart" ? "until it is ready again" : "until it is started"}.`, `${verb} ComfyUI`);
      if (!ok) return;
    }
    const r = await api("POST", `/comfyui/${what}`);
    toast(`${what} requested (operation ${r.op_id})`);
  } }, what[0].toUpperCase() + what.slice(1));
  const memory = h("p", { id: "comfy-memory" });
  const showMemory = async () => {
    const sys = await api("GET", "/system").catch(() => null);
    const c = sys?.current?.comfyui;
    const g = sys?.comfyui_memory_growth;
    memory.replaceChildren(c
      ? `memory ${fmtBin(c.rss_bytes)} · CPU ${c.cpu_percent.toFixed(0)} % · ${c.threads} threads · ${c.processes} processes · up ${fmtSecs(c.uptime_s)}`
      : "memory — (not running, attached, or the sampler is off)",
    g ? h("span", { id: "comfy-memory-growth", class: "badge growing", title: `from ${fmtBin(g.from_bytes)} to ${fmtBin(g.to_bytes)} in ${fmtSecs(g.over_s)}` },
      ` memory keeps growing: +${fmtBin(g.bytes_per_hour)}/h`) : null,
    sys?.memory_guard ? h("span", { class: "muted" }, ` · memory guard at ${fmtBin(sys.memory_guard.limit_bytes)} (${sys.memory_guard.restarts} restarts)`) : null);
  };
  showMemory();
  state.timers.push(setInterval(showMemory, 10000));
  const plain = {
    ready: "ComfyUI is running and takes prompts.", attached: "Attached to a ComfyUI this host does not manage: it takes prompts.",
    starting: "ComfyUI is starting; prompts wait until it is ready.", stopped: "ComfyUI is stopped: prompts are refused until you start it.",
    backoff: "ComfyUI exited and is restarted after a pause.", failed: "ComfyUI failed to start: see the reason and the log below.",
  }[st.state] ?? `ComfyUI is ${st.state}.`;
  main.replaceChildren(h("h2", {}, "ComfyUI ", stateEl), h("p", { id: "comfy-summary" }, plain),
    h("div", { class: "panel" }, op("start"), " ", op("restart"), " ", op("stop"), detail, memory, h("h4", {}, "Progress"), events),
    h("div", { class: "panel" }, h("h4", {}, "Log (live)"), logs));
  const page = await api("GET", "/comfyui/logs?limit=200");
  const lines = (page.lines ?? page.entries ?? []).map((l) => l.line ?? l.text ?? JSON.stringify(l));
  logs.textContent = lines.join("\n");
  logs.scrollTop = logs.scrollHeight;
  live("/comfyui/events", {
    supervisor: async (e) => {
      events.append(h("li", { "data-event": e.type, "data-state": e.state ?? "" }, describe(e)));
      while (events.children.length > 50) events.firstChild.remove();
      showStatus(await api("GET", "/comfyui"));
    },
    log: (l) => {
      logs.textContent += `\n${l.line ?? l.text ?? JSON.stringify(l)}`;
      logs.scrollTop = logs.scrollHeight;
    },
  });
}

// System ------------------------------------------------------------------------------------------

async function system(main) {
  const body = h("div", { id: "system" });
  main.replaceChildren(h("h2", {}, "System"), body);
  const draw = async () => {
    const s = await api("GET", "/system");
    const cur = s.current;
    const hist = s.history ?? [];
    const series = (k) => hist.map((p) => p[k]);
    const tile = (id, title, value, values, max) => h("div", { class: "tile", id },
      h("h4", {}, title), h("div", { class: "value" }, value), values ? sparkline(values, max) : null);
    const m = cur?.machine;
    const tiles = cur ? [
      tile("sys-cpu", `CPU (${m.cpus} cores)`, `${m.cpu_percent.toFixed(0)} % · load ${m.load_average.map((l) => l.toFixed(2)).join(" ")}`, series("cpu_percent"), 100),
      tile("sys-memory", "Memory", `${fmtBin(m.memory_used_bytes)} of ${fmtBin(m.memory_total_bytes)}`, series("memory_used_bytes"), m.memory_total_bytes),
      tile("sys-host", "comfyhost process", cur.host ? `${fmtBin(cur.host.rss_bytes)} · CPU ${cur.host.cpu_percent.toFixed(1)} % · ${cur.host.threads} threads` : "—", series("host_rss_bytes")),
      tile("sys-comfyui", "ComfyUI processes", cur.comfyui ? `${fmtBin(cur.comfyui.rss_bytes)} · CPU ${cur.comfyui.cpu_percent.toFixed(0)} % · ${cur.comfyui.threads} threads · up ${fmtSecs(cur.comfyui.uptime_s)}` : "not running here",
        series("comfyui_rss_bytes")),
      tile("sys-output-free", "Output volume free", fmtBin(s.low_disk.output_volume?.free_bytes), series("output_free_bytes"), s.low_disk.output_volume?.total_bytes),
      ...(cur.gpus ?? []).map((g) => tile(`sys-gpu-${g.index}`, `GPU ${g.index}: ${g.name}`,
        `${g.utilization_percent ?? "—"} % · ${fmtBin(g.memory_used_bytes)} of ${fmtBin(g.memory_total_bytes)} · ${g.temperature_celsius ?? "—"} °C`,
        g.index === 0 ? series("gpu_utilization_percent") : null, 100)),
    ] : [h("p", { class: "muted" }, s.sampling.enabled ? "First reading in progress…" : "The sampler is off (--system-sample-ms 0); only the disk guard runs.")];
    if (cur?.gpu_error) tiles.push(h("p", { class: "error-text" }, cur.gpu_error));
    const vols = (cur?.volumes ?? (s.low_disk.output_volume ? [s.low_disk.output_volume] : [])).map((v) => {
      const used = v.total_bytes ? 1 - v.free_bytes / v.total_bytes : 0;
      const low = v.free_bytes < s.low_disk.threshold_bytes && v.roles.includes("output");
      return h("tr", { "data-mount": v.mount_point }, h("td", { class: "mono" }, v.mount_point), h("td", {}, v.roles.join(", ")),
        h("td", {}, `${fmtBin(v.free_bytes)} free of ${fmtBin(v.total_bytes)}`),
        h("td", { style: "width: 30%" }, h("div", { class: `bar${low ? " low" : ""}` }, h("div", { style: `width: ${(used * 100).toFixed(1)}%` }))));
    });
    const threshold = h("input", { id: "low-disk-threshold", "aria-label": "Low-disk threshold in MiB", type: "number", min: 0, value: Math.round(s.low_disk.threshold_bytes / 1048576), size: 10 });
    const save = h("button", { id: "low-disk-save", onclick: async () => {
      await api("PUT", "/system/low-disk", { threshold_bytes: Number(threshold.value) * 1048576 });
      toast("Low-disk threshold saved");
      refreshBanner();
      draw();
    } }, "Save");
    body.replaceChildren(
      h("div", { class: "panel" }, h("div", { class: "tiles" }, tiles),
        h("p", { class: "muted" }, s.sampling.enabled ? `Every ${s.sampling.interval_ms / 1000} s; charts show the last hour (${hist.length} readings).` : "")),
      h("div", { class: "panel" }, h("h4", {}, "Volumes"),
        h("table", { id: "volumes" }, h("thead", {}, h("tr", {}, ["Mount", "Used for", "Space", ""].map((t) => h("th", {}, t)))), h("tbody", {}, vols)),
        h("p", {}, s.low_disk.low ? h("span", { id: "low-disk-state", class: "badge state-failed" }, "low disk") : h("span", { id: "low-disk-state", class: "badge state-ready" }, "disk ok"),
          " Warn below ", threshold, " MiB free on the output volume ", save)),
      s.memory_guard ? h("div", { class: "panel" }, `Memory guard: ComfyUI restarts between jobs above ${fmtBin(s.memory_guard.limit_bytes)} (${s.memory_guard.restarts} so far).`) : null,
    );
  };
  await draw();
  state.timers.push(setInterval(() => { if (!document.activeElement || document.activeElement.id !== "low-disk-threshold") draw().catch(() => {}); }, 10000));
}

// GPU ---------------------------------------------------------------------------------------------

async function gpu(main) {
  const [r, over] = await Promise.all([api("GET", "/gpu"), api("GET", "/gpu/override")]);
  if (r.detected === false) {
    main.replaceChildren(h("h2", {}, "GPU and attention"),
      h("p", { id: "gpu-summary" }, "The host does not choose ComfyUI's GPU settings here: ComfyUI starts with its own defaults."),
      details(r.reason));
    return;
  }
  const inv = r.inventory;
  const d = r.decision;
  const choices = ["auto", "sage", "flash", "xformers", "pytorch", "split", "quad", "cpu"];
  const current = over.attention === "auto" ? "auto" : over.attention?.force ?? "auto";
  const sel = h("select", { id: "attention" }, choices.map((c) => h("option", { value: c, selected: c === current }, c)));
  const extra = h("input", { id: "extra-flags", value: (over.extra_flags ?? []).join(" "), size: 40 });
  const allow = h("input", { id: "allow-incompatible", type: "checkbox", checked: over.allow_incompatible === true });
  const result = h("div", { id: "override-result" });
  const save = async (restart) => {
    if (restart && !await confirmDialog("Save and restart ComfyUI?", `${await interruptedJobs()} ComfyUI restarts with the new flags.`, "Save and restart")) return;
    const body = { attention: sel.value === "auto" ? "auto" : { force: sel.value }, extra_flags: extra.value.split(/\s+/).filter(Boolean), allow_incompatible: allow.checked, restart };
    try {
      const res = await api("PUT", "/gpu/override", body);
      result.replaceChildren(h("p", {}, `Saved: flags ${res.decision.flags.join(" ") || "(none)"}; applies ${res.applies}.`));
      toast("Attention override saved");
    } catch (e) {
      result.replaceChildren(h("p", { class: "error-text" }, e.message));
    }
  };
  const cpu = d.choice === "cpu";
  const names = [...new Set(inv.gpus.map((g) => g.name))].join(", ");
  // One plain sentence first; the raw NVML / nvidia-smi errors once, behind "Details".
  const summary = inv.gpus.length === 0
    ? "No NVIDIA GPU found: ComfyUI runs on the CPU (slow)."
    : cpu ? `${inv.gpus.length} GPU${inv.gpus.length === 1 ? "" : "s"} found (${names}), but ComfyUI runs on the CPU (slow): see the reasons below.`
      : `${inv.gpus.length} GPU${inv.gpus.length === 1 ? "" : "s"} found (${names}): ComfyUI uses ${d.choice} attention.`;
  // In CPU mode `error` joins the notes: each detection error once, one a line.
  const raw = [...(inv.notes?.length ? inv.notes : [inv.error]), r.probe_error ? `Python environment: ${r.probe_error}` : null].filter(Boolean).join("\n");
  const c = r.confirmation;
  const confirmation = !c ? null : h("p", { id: "confirmation", class: c.status === "mismatch" ? "error-text" : "muted" },
    c.status === "confirmed" ? `Confirmed by ComfyUI's log: ${c.detail}`
      : c.status === "mismatch" ? `ComfyUI's log disagrees: ${c.detail}`
        : c.status === "demoted" ? `Changed after ComfyUI's log showed repeated failures: ${c.detail}`
          : `Waiting for ComfyUI's log to confirm${c.detail ? ` (${c.detail})` : ""}`);
  main.replaceChildren(h("h2", {}, "GPU and attention"),
    h("p", { id: "gpu-summary", class: cpu ? "warn-text" : null }, summary, " ", details(raw)),
    h("div", { class: "grid" },
      h("div", { class: "panel" }, h("h4", {}, "Inventory"),
        inv.gpus.length === 0 ? h("p", { class: "muted" }, "No GPU listed.") :
          h("table", { id: "gpus" }, h("thead", {}, h("tr", {}, ["#", "Name", "SM", "VRAM", "MIG"].map((t) => h("th", {}, t)))),
            h("tbody", {}, inv.gpus.map((g) => h("tr", {}, h("td", {}, g.index), h("td", {}, g.name), h("td", {}, g.sm ? `${g.sm.major}.${g.sm.minor}` : "—"),
              h("td", {}, g.vram_total_mib ? `${(g.vram_total_mib / 1024).toFixed(1)} GiB` : "—"), h("td", {}, g.mig_mode))))),
        h("p", { class: "muted" }, `driver ${inv.driver_version ?? "—"} · CUDA ${inv.cuda_driver_version ? `${inv.cuda_driver_version.major}.${inv.cuda_driver_version.minor}` : "—"} · source ${inv.source}`)),
      h("div", { class: "panel" }, h("h4", {}, "Decision"),
        h("p", { id: "decision" }, badge(d.choice), " flags ", h("code", {}, d.flags.join(" ") || "(none)")),
        d.refusal ? h("p", { class: "error-text" }, d.refusal) : null,
        h("ul", { id: "reasons" }, d.reasons.map((x) => h("li", {}, x))),
        d.warnings?.length ? h("ul", { class: "error-text" }, d.warnings.map((x) => h("li", {}, x))) : null,
        confirmation)),
    h("div", { class: "panel" }, h("h4", {}, "Override"),
      h("label", { for: "attention" }, "Attention"), sel,
      h("label", { for: "extra-flags" }, "Extra ComfyUI flags (checked against main.py --help)"), extra,
      h("label", {}, allow, " Start even when the compatibility checks refuse"),
      h("p", {}, h("button", { id: "override-save", onclick: () => save(false) }, "Save"), " ", h("button", { class: "primary", id: "override-apply", onclick: () => save(true) }, "Save and restart ComfyUI")),
      result));
}

// Jobs --------------------------------------------------------------------------------------------

// What stopping ComfyUI now would interrupt, in a sentence.
async function interruptedJobs() {
  const list = await api("GET", "/jobs?limit=1000").catch(() => []);
  const running = list.filter((j) => j.status === "running").length;
  const queued = list.filter((j) => j.status === "queued").length;
  return running + queued === 0
    ? "No job is running or queued now."
    : `${running} running and ${queued} queued job${running + queued === 1 ? "" : "s"} will be interrupted (ComfyUI does not keep its queue across a restart: they end cancelled and must be queued again).`;
}

const PREFIX = BASE.replace(/\/comfyhost$/, ""); // where ComfyUI is served

function transformNotes(j) {
  if (!j.transform_notes_json) return null;
  let list;
  try { list = JSON.parse(j.transform_notes_json); } catch { return h("div", { class: "notes" }, j.transform_notes_json); }
  if (!Array.isArray(list) || list.length === 0) return null;
  return h("ul", { class: "notes" }, list.map((t) => h("li", {}, `${t.plugin_id} changed the workflow${t.notes?.length ? `: ${t.notes.join("; ")}` : ""}`)));
}

async function jobs(main) {
  const tbody = h("tbody");
  let inFlightShown = false;
  const cancel = async (j) => {
    const ok = await confirmDialog("Cancel this job?", `Job ${j.prompt_id.slice(0, 8)} of ${j.user_id ?? "an anonymous user"} is ${j.status}: ${j.status === "running" ? "it is interrupted" : "it is taken out of the queue"}.`, "Cancel the job");
    if (!ok) return;
    try {
      const r = await api("POST", `/jobs/${encodeURIComponent(j.prompt_id)}/cancel`);
      toast(`Job ${j.prompt_id.slice(0, 8)} ${r.done}`);
    } catch (e) { toast(e.message, true); }
    fill().catch(() => {});
  };
  const fill = async () => {
    const list = await api("GET", "/jobs?limit=200");
    if (list.length === 0) {
      tbody.replaceChildren(emptyRow(9, "No jobs yet. Every prompt queued through this host (from ",
        h("a", { href: `${PREFIX}/` }, "ComfyUI"), " or POST /prompt) appears here: who sent it, where it ran, how long it waited and ran, what plugins changed, and how it ended."));
      return;
    }
    inFlightShown = list.some((j) => j.status === "queued" || j.status === "running");
    tbody.replaceChildren(...list.map((j) => {
      const err = jobError(j);
      const waited = j.started_ms ? dur(j.submitted_ms, j.started_ms) : j.status === "queued" ? "waiting" : "—";
      const ran = j.started_ms ? (j.finished_ms ? dur(j.started_ms, j.finished_ms) : "running") : "—";
      const inFlight = j.status === "queued" || j.status === "running";
      return h("tr", { "data-job": j.prompt_id, "data-status": j.status },
        h("td", { class: "mono", title: j.prompt_id }, j.prompt_id.slice(0, 8)),
        h("td", {}, j.user_id ?? h("span", { class: "muted" }, "anonymous")),
        h("td", {}, j.route === "reject" ? "refused by the host" : `${j.route ?? "—"}${j.backend && j.backend !== "local" ? ` (${j.backend})` : ""}`),
        h("td", {}, badge(j.status)), h("td", {}, fmtMs(j.submitted_ms)),
        h("td", { class: "waited" }, waited), h("td", { class: "ran" }, ran),
        h("td", { class: "outcome" },
          err ? h("div", { class: "error-text job-error" }, err.text) : null, err ? details(err.raw) : null,
          transformNotes(j)),
        h("td", {},
          j.status === "succeeded" ? h("a", { class: "job-outputs", href: `${PREFIX}/history/${encodeURIComponent(j.prompt_id)}`, target: "_blank", rel: "noopener" }, "Outputs") : null,
          inFlight ? h("button", { class: "danger job-cancel", "data-job": j.prompt_id, onclick: () => cancel(j) }, "Cancel") : null));
    }));
  };
  await fill();
  main.replaceChildren(h("h2", {}, "Jobs"),
    h("p", { class: "muted" }, "The last 200 prompts, newest first. Waited: from submission until ComfyUI started it; Ran: until it ended."),
    h("div", { class: "panel" }, h("table", { id: "jobs-table" },
      h("thead", {}, h("tr", {}, ["Prompt", "User", "Route", "Status", "Submitted", "Waited", "Ran", "Error and changes", ""].map((t) => h("th", {}, t)))), tbody)));
  live("/jobs/events", { job: () => fill().catch(() => {}) });
  // Queued and running jobs change (start) without an end event.
  state.timers.push(setInterval(() => { if (inFlightShown) fill().catch(() => {}); }, 3000));
}

// Backends ----------------------------------------------------------------------------------------

async function backends(main) {
  const list = await api("GET", "/backends");
  main.replaceChildren(h("h2", {}, "Remote backends"), list.length === 0
    ? h("p", { class: "muted" }, "None configured (--backends FILE): every prompt runs on this machine.")
    : h("div", { class: "panel" }, h("table", { id: "backends-table" },
      h("thead", {}, h("tr", {}, ["Name", "Kind", "Health", "Queue", "Last success", "Last error"].map((t) => h("th", {}, t)))),
      h("tbody", {}, list.map((b) => h("tr", {}, h("td", {}, b.status.name), h("td", {}, b.comfyui_version ? `${b.status.kind} ${b.comfyui_version}` : b.status.kind),
        h("td", {}, badge(b.status.healthy ? "ready" : "failed")), h("td", {}, `${b.status.queue_running} running · ${b.status.queue_pending} pending`),
        h("td", {}, fmtMs(b.last_ok_ms)), h("td", { class: "error-text" }, b.last_error ?? "")))))));
}

// Users -------------------------------------------------------------------------------------------

// The page lives in users.js.
async function users(main) {
  return window.comfyhostPages.users(main, { api, h, toast, fmtMs, route });
}

// Room (limits, quarantine): room.js.
async function room(main) {
  return window.comfyhostPages.room(main, { api, h, toast, fmtMs, route });
}

// Models ------------------------------------------------------------------------------------------

function fmtBytes(n) {
  if (!n) return "0 B";
  const u = ["B", "KB", "MB", "GB", "TB"];
  const i = Math.min(u.length - 1, Math.floor(Math.log(n) / Math.log(1000)));
  return `${(n / 1000 ** i).toFixed(i ? 1 : 0)} ${u[i]}`;
}

async function models(main) {
  const wf = h("textarea", { id: "workflow-json", placeholder: "Paste a workflow (API or UI format, as saved by ComfyUI)" });
  const file = h("input", { id: "workflow-file", "aria-label": "Workflow file", type: "file", accept: ".json", onchange: async () => {
    if (file.files[0]) wf.value = await file.files[0].text();
  } });
  const err = h("textarea", { id: "comfyui-error", placeholder: "Optional: ComfyUI's 400 answer (value_not_in_list) for it" });
  const out = h("div", { id: "resolution" });
  const downloads = h("div", { id: "downloads" });
  const showDownloads = async () => {
    const ops = await api("GET", "/models/downloads");
    downloads.replaceChildren(ops.length === 0 ? h("p", { class: "muted" }, "No downloads yet.") :
      h("table", { id: "downloads-table" }, h("thead", {}, h("tr", {}, ["Preset", "State", "Progress", "Rate", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, ops.map((o) => {
          const pct = o.bytes_total ? Math.floor((o.bytes_done * 100) / o.bytes_total) : 0;
          const ctl = (what) => h("button", { onclick: async () => { await api("POST", `/models/downloads/${o.id}/${what}`).catch((e) => toast(e.message, true)); showDownloads(); } }, what);
          return h("tr", { "data-download": o.id }, h("td", {}, o.preset_name || o.preset_id),
            h("td", {}, badge(o.state), o.error ? h("div", { class: "error-text" }, o.error) : null),
            h("td", {}, h("progress", { max: 100, value: pct }), ` ${pct}% of ${fmtBytes(o.bytes_total)}`),
            h("td", {}, o.rate_bps ? `${fmtBytes(o.rate_bps)}/s` : "—"),
            h("td", {}, o.state === "running" || o.state === "queued" ? ctl("pause") : null, o.state === "paused" ? ctl("resume") : null,
              ["running", "queued", "paused"].includes(o.state) ? ctl("cancel") : null));
        }))));
    return ops.some((o) => ["running", "queued"].includes(o.state));
  };
  const poll = async () => {
    if (!location.hash.startsWith("#models")) return;
    try { if (await showDownloads()) setTimeout(poll, 1000); } catch { /* signed out */ }
  };
  const resolve = async (e) => {
    e.preventDefault();
    out.textContent = "Resolving…";
    let body;
    try {
      body = { workflow: JSON.parse(wf.value) };
      if (err.value.trim()) body.comfyui_error = JSON.parse(err.value);
    } catch (x) {
      out.replaceChildren(h("p", { class: "error-text" }, `Not valid JSON: ${x.message}`));
      return;
    }
    try {
      const r = await api("POST", "/models/resolve", body);
      out.replaceChildren(
        h("p", { id: "resolution-summary" }, r.summary),
        h("table", {}, h("thead", {}, h("tr", {}, ["Model", "Folder", "Node", ""].map((t) => h("th", {}, t)))),
          h("tbody", {}, r.required.map((m) => h("tr", {}, h("td", {}, m.name), h("td", {}, m.folder), h("td", {}, `${m.node_id} ${m.class_type}`),
            h("td", {}, r.missing.some((x) => x.name === m.name && x.folder === m.folder) ? badge("missing") : badge("installed")))))),
        ...r.presets.map((p) => presetOffer(p, r.download_origins || [], poll)),
        r.unmapped.length ? h("p", { class: "error-text" }, `No preset provides: ${r.unmapped.map((m) => m.name).join(", ")}`) : null);
    } catch (x) {
      out.replaceChildren(h("p", { class: "error-text" }, x.message));
    }
  };
  main.replaceChildren(h("h2", {}, "Models"),
    h("form", { id: "resolve-form", class: "panel", onsubmit: resolve }, h("label", { for: "workflow-json" }, "Workflow"), file, wf,
      h("label", { for: "comfyui-error" }, "ComfyUI error"), err, h("p", {}, h("button", { class: "primary", type: "submit" }, "What does it need?"))),
    h("div", { class: "panel" }, h("h4", {}, "Result"), out),
    h("div", { class: "panel" }, h("h4", {}, "Downloads"), downloads));
  await showDownloads();
  poll();
}

// Outputs -----------------------------------------------------------------------------------------

// Why output sync does (not) run, in the same terms as the plugin table: the first thing that
// stops it, with the page where it is fixed.
function outputsReason(o, list) {
  const sync = list.filter((p) => (p.hooks ?? []).includes("output-sync"));
  const link = (p) => h("a", { href: `#plugins/${encodeURIComponent(p.id)}` }, p.id);
  if (!o.output_dir) return ["Disabled: this host has no local output folder (attach mode), so there is nothing to copy here."];
  if (sync.length === 0) return ["Disabled: no output-sync plugin is installed. ", h("a", { href: "#install" }, "Install"), " one (e.g. output-sync) to copy every new output to a folder or S3."];
  const on = sync.filter((p) => p.enabled);
  if (on.length === 0) return ["Disabled: the output-sync plugin ", ...sync.flatMap((p, i) => [i ? ", " : "", link(p)]), " is switched off; enable it on its page."];
  const waiting = on.filter((p) => p.state?.state !== "enabled");
  if (waiting.length === on.length) {
    const p = waiting[0];
    const why = p.state?.state === "needs_approval" ? "waits for you to approve what it asks for (its directories, network or secrets)" : `is ${String(p.state?.state ?? "not running").replaceAll("_", " ")}`;
    return ["Disabled: ", link(p), ` is enabled in the table but ${why}.`];
  }
  const running = on.filter((p) => p.state?.state === "enabled");
  const noDest = running.filter((p) => Array.isArray(p.config?.destinations) && p.config.destinations.length === 0);
  if (noDest.length === running.length && noDest.length) return ["Enabled, but ", link(noDest[0]), " has no destination configured: add one under \u201cdestinations\u201d in its configuration; until then nothing is copied."];
  const h2 = o.plugins ?? [];
  const unmounted = running.filter((p) => h2.find((x) => x.plugin_id === p.id)?.output_mounted === false);
  if (unmounted.length === running.length) return ["Enabled, but ", link(unmounted[0]), " is not granted the output folder ({output}): approve it on its page, or it cannot read the files."];
  return [`Enabled: ${running.map((p) => p.id).join(", ")} copies each new output.`];
}

async function outputs(main) {
  const [o, list] = await Promise.all([api("GET", "/outputs"), api("GET", "/plugins").catch(() => [])]);
  const b = o.backlog ?? {};
  main.replaceChildren(h("h2", {}, "Output sync"),
    h("div", { class: "panel", id: "outputs-backlog" },
      h("p", { id: "outputs-state" }, o.active ? badge("enabled") : badge("disabled"), " ", ...outputsReason(o, list)),
      h("p", { class: "muted" }, `output folder ${o.output_dir ?? "—"}`),
      h("p", {}, `backlog: ${b.pending ?? 0} pending, ${b.retrying ?? 0} retrying${b.oldest_pending_ms ? ` (oldest ${fmtMs(b.oldest_pending_ms)})` : ""} · ${b.done ?? 0} synced · ${b.gone ?? 0} gone`),
      h("p", {}, o.mirror_active
        ? `mirror deletion on (cap ${o.removal_cap} per pass): ${b.removing ?? 0} being taken back · ${b.removed ?? 0} taken back`
        : "mirror deletion off (no enabled plugin mirrors deletions)"),
      o.held_until_ms ? h("p", { class: "error-text" }, `Paused after ${o.consecutive_failures} failures until ${fmtMs(o.held_until_ms)}`) : null,
      o.removals_held ? h("div", { id: "removals-held", class: "error-text" },
        h("p", {}, `${o.removals_held.count} synced outputs vanished from the output folder at once (more than the cap of ${o.removals_held.cap}) since ${fmtMs(o.removals_held.since_ms)}. ` +
          "Their destination copies are kept until you release them. If the output folder is an unmounted or wiped volume, fix that instead."),
        h("ul", {}, o.removals_held.sample.map((f) => h("li", { class: "mono" }, f))),
        h("button", { id: "release-removals", onclick: async () => {
          if (!await confirmDialog("Delete destination copies?", `The destination copies of ${o.removals_held.count} outputs are deleted.`, "Delete them")) return;
          await api("POST", "/outputs/removals/release");
          await outputs(main);
        } }, `Delete ${o.removals_held.count} destination copies`)) : null,
      h("p", { class: "muted" }, `last full pass ${fmtMs(o.last_full_pass_ms)}`)),
    h("div", { class: "panel" }, h("table", { id: "outputs-table" },
      h("thead", {}, h("tr", {}, ["Plugin", "Synced", "Skipped", "Taken back", "Retries", "Failures", "Last success", "Last error", "Output folder"].map((t) => h("th", {}, t)))),
      h("tbody", {}, (o.plugins ?? []).length === 0 ? emptyRow(9, "Nothing synced yet. Once an output-sync plugin runs, each one shows here with what it copied, retried and failed.") : (o.plugins ?? []).map((p) => h("tr", {}, h("td", {}, p.plugin_id), h("td", {}, p.synced), h("td", {}, p.skipped), h("td", {}, `${p.removed ?? 0} (kept ${p.kept ?? 0})`), h("td", {}, p.retries), h("td", {}, p.failures),
        h("td", {}, p.last_success_ms ? `${fmtMs(p.last_success_ms)} → ${p.last_synced_to ?? ""}` : "—"),
        h("td", { class: "error-text" }, p.last_error ? `${p.last_error.type}: ${p.last_error.message}` : ""),
        h("td", {}, p.output_mounted ? badge("granted") : badge("pending"))))))));
}

// Activity ----------------------------------------------------------------------------------------

async function activity(main) {
  const list = await api("GET", "/activity?limit=300");
  main.replaceChildren(h("h2", {}, "Activity"), h("div", { class: "panel" }, h("table", { id: "activity-table" },
    h("thead", {}, h("tr", {}, ["When", "Who", "What", "Target", "Detail"].map((t) => h("th", {}, t)))),
    h("tbody", {}, list.length === 0 ? emptyRow(5, "Nothing yet. Admin actions (installs, grants, configuration, restarts, cancellations) and plugins switching on are recorded here with who and when.")
      : list.map((a) => h("tr", {}, h("td", {}, fmtMs(a.ts_ms)), h("td", {}, a.actor), h("td", {}, a.action), h("td", {}, a.target),
        h("td", {}, a.detail && Object.keys(a.detail).length ? details(a.detail, "Detail") : null)))))));
}

// ----- boot -------------------------------------------------------------------------------------

(async () => {
  try {
    const me = await api("GET", "/session");
    if (me.is_admin && me.csrf_token) {
      state.me = me;
      state.csrf = me.csrf_token;
      start();
      return;
    }
    showLogin(me.is_admin ? undefined : `Signed in as ${me.user}, who is not an admin.`);
  } catch {
    showLogin();
  }
})();
