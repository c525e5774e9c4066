// comfyhost sign-in badge: a small corner label in the ComfyUI page saying who is signed in,
// with "Sign out", or a "Sign in" link when the page is used anonymously. Served by the host
// and added to ComfyUI's /extensions list; nothing is installed into ComfyUI. It must never
// break the page: every entry point is guarded.

const BADGE_ID = "comfyhost-signin";

function basePath() {
  const p = window.location.pathname;
  return p.endsWith("/") ? p.slice(0, -1) : p.replace(/\/[^/]*$/, "");
}

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

async function render() {
  const base = basePath();
  const r = await fetch(`${base}/comfyhost/api/session?optional=1`, { credentials: "same-origin" });
  if (!r.ok) return;
  const me = await r.json();
  document.getElementById(BADGE_ID)?.remove();
  const badge = el("div", { id: BADGE_ID });
  Object.assign(badge.style, {
    position: "fixed", right: "8px", bottom: "8px", zIndex: "10000", padding: "4px 10px",
    borderRadius: "6px", font: "12px/1.4 system-ui, sans-serif", color: "#eee",
    background: "rgba(30,30,30,0.85)", boxShadow: "0 1px 6px rgba(0,0,0,0.4)",
  });
  const signin = `${base}/comfyhost/signin?next=${encodeURIComponent(`${base}/`)}`;
  if (me && me.user) {
    badge.appendChild(el("span", { class: "comfyhost-signin-user" }, `Signed in as ${me.user}`));
    badge.appendChild(document.createTextNode(" · "));
    const out = el("a", { href: "#", class: "comfyhost-signout" }, "Sign out");
    out.style.color = "#93c5fd";
    out.addEventListener("click", async (e) => {
      e.preventDefault();
      try {
        await fetch(`${base}/comfyhost/api/session`, { method: "DELETE", credentials: "same-origin" });
      } finally {
        window.location.href = signin;
      }
    });
    badge.appendChild(out);
  } else {
    const a = el("a", { href: signin, class: "comfyhost-signin-link" }, "Sign in");
    a.style.color = "#93c5fd";
    badge.appendChild(a);
  }
  document.body.appendChild(badge);
}

try {
  render().catch((e) => console.warn("[comfyhost] sign-in badge", e));
} catch (e) {
  console.warn("[comfyhost] sign-in badge", e);
}
