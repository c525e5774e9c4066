// comfyhost status overlay: a banner in the ComfyUI page showing what the host's
// status-overlay plugins say about this browser's jobs (`comfyhost.overlay` WebSocket
// messages). Served by the host and added to ComfyUI's /extensions list only while a
// status-overlay plugin is enabled; nothing is installed into ComfyUI.
//
// It must never break the page: every entry point is guarded, and it does nothing when the
// ComfyUI API object is not where it expects.

const BANNER_ID = "comfyhost-overlay";
const MODE_KEY = "comfyhost.overlay.admin";

function comfyApi() {
  try {
    return window.comfyAPI?.api?.api ?? window.app?.api ?? null;
  } catch {
    return null;
  }
}

function basePath() {
  // The page may live under a path prefix (`/comfy/`): keep everything relative to it.
  const p = window.location.pathname;
  return p.endsWith("/") ? p.slice(0, -1) : p.replace(/\/[^/]*$/, "");
}

const state = {
  isAdmin: false,
  adminMode: false,
  jobs: new Map(), // prompt_id -> last update
  hideTimer: null,
  comfyui: null, // the host's word on ComfyUI while it is down (`comfyhost.comfyui`)
};

const COMFYUI_TEXT = {
  starting: "ComfyUI is starting…",
  backoff: "ComfyUI stopped unexpectedly and is restarting…",
  stopping: "ComfyUI is stopping…",
  stopped: "ComfyUI is stopped.",
  failed: "ComfyUI failed to start.",
};

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function banner() {
  let b = document.getElementById(BANNER_ID);
  if (b) return b;
  b = el("div", { id: BANNER_ID, role: "status", "aria-live": "polite" });
  Object.assign(b.style, {
    position: "fixed", top: "8px", left: "50%", transform: "translateX(-50%)",
    zIndex: "10000", minWidth: "320px", maxWidth: "640px", padding: "8px 12px",
    borderRadius: "8px", font: "13px/1.4 system-ui, sans-serif", color: "#fff",
    background: "rgba(30,30,30,0.92)", boxShadow: "0 2px 10px rgba(0,0,0,0.4)",
    display: "none", pointerEvents: "auto",
  });
  document.body.appendChild(b);
  return b;
}

const COLORS = { info: "#3b82f6", progress: "#8b5cf6", success: "#16a34a", error: "#dc2626" };

function render() {
  const b = banner();
  b.textContent = "";
  const live = [...state.jobs.values()];
  if (state.comfyui && state.comfyui.connected === false) {
    const c = state.comfyui;
    const text = COMFYUI_TEXT[c.state] ?? (c.restarting ? "ComfyUI is restarting…" : "ComfyUI is not reachable; retrying…");
    live.unshift({ prompt_id: "comfyui", severity: c.state === "failed" ? "error" : "info", user_text: `${text} This page stays connected.` });
  }
  if (live.length === 0) {
    b.style.display = "none";
    return;
  }
  for (const u of live) {
    const row = el("div", { class: "comfyhost-overlay-job", "data-prompt-id": u.prompt_id, "data-severity": u.severity });
    row.style.borderLeft = `4px solid ${COLORS[u.severity] ?? "#888"}`;
    row.style.paddingLeft = "8px";
    row.style.margin = "4px 0";
    row.appendChild(el("div", { class: "comfyhost-overlay-text" }, u.user_text));
    if (typeof u.fraction === "number") {
      const bar = el("div");
      Object.assign(bar.style, { height: "4px", background: "rgba(255,255,255,0.2)", borderRadius: "2px", marginTop: "4px" });
      const fill = el("div");
      Object.assign(fill.style, { height: "100%", width: `${Math.round(Math.max(0, Math.min(1, u.fraction)) * 100)}%`, background: COLORS[u.severity] ?? "#888", borderRadius: "2px" });
      bar.appendChild(fill);
      row.appendChild(bar);
    }
    if (state.isAdmin && state.adminMode && Array.isArray(u.admin_detail) && u.admin_detail.length) {
      const pre = el("pre", { class: "comfyhost-overlay-admin" }, u.admin_detail.join("\n"));
      Object.assign(pre.style, { margin: "4px 0 0", whiteSpace: "pre-wrap", font: "11px/1.3 ui-monospace, monospace", opacity: "0.85", maxHeight: "12em", overflow: "auto" });
      row.appendChild(pre);
    }
    b.appendChild(row);
  }
  if (state.isAdmin) {
    const toggle = el("button", { type: "button", class: "comfyhost-overlay-mode" }, state.adminMode ? "user view" : "admin view");
    Object.assign(toggle.style, { marginTop: "4px", font: "11px system-ui", background: "transparent", color: "#ccc", border: "1px solid #666", borderRadius: "4px", cursor: "pointer" });
    toggle.addEventListener("click", () => {
      state.adminMode = !state.adminMode;
      try { localStorage.setItem(MODE_KEY, state.adminMode ? "1" : "0"); } catch { /* private mode */ }
      render();
    });
    b.appendChild(toggle);
  }
  b.style.display = "block";
}

function onUpdate(u) {
  if (!u || typeof u.prompt_id !== "string" || typeof u.user_text !== "string") return;
  state.jobs.set(u.prompt_id, u);
  if (u.terminal) {
    // Finished jobs fade after a while; errors stay longer so they can be read.
    const keep = u.severity === "error" ? 30000 : 8000;
    setTimeout(() => {
      const cur = state.jobs.get(u.prompt_id);
      if (cur && cur.terminal) {
        state.jobs.delete(u.prompt_id);
        safeRender();
      }
    }, keep);
  }
  safeRender();
}

function safeRender() {
  try {
    render();
  } catch (e) {
    console.warn("[comfyhost] overlay render failed", e);
  }
}

async function whoami() {
  try {
    // `optional=1`: 200 with no user when anonymous (no 401 in the console).
    const r = await fetch(`${basePath()}/comfyhost/api/session?optional=1`, { credentials: "same-origin" });
    if (!r.ok) return;
    const me = await r.json();
    state.isAdmin = me?.is_admin === true;
    state.adminMode = state.isAdmin && localStorage.getItem(MODE_KEY) === "1";
  } catch {
    /* not signed in, or the host is unreachable: user mode */
  }
}

function start() {
  const api = comfyApi();
  if (!api || typeof api.addEventListener !== "function") {
    console.info("[comfyhost] ComfyUI API not found; status overlay inactive");
    return;
  }
  api.addEventListener("comfyhost.overlay", (e) => {
    try {
      onUpdate(e?.detail);
    } catch (err) {
      console.warn("[comfyhost] overlay update failed", err);
    }
  });
  api.addEventListener("comfyhost.comfyui", (e) => {
    try {
      state.comfyui = e?.detail ?? null;
      safeRender();
    } catch (err) {
      console.warn("[comfyhost] ComfyUI notice failed", err);
    }
  });
  whoami();
  window.__comfyhostOverlay = { state, render: safeRender };
}

try {
  start();
} catch (e) {
  console.warn("[comfyhost] status overlay disabled", e);
}
