// comfyhost dashboard: the Users page. Workshop users (create one or many, delete), each new
// token with a copy button, a sheet of the names and tokens just created (shown once: print it
// or download it as CSV), and "sign out everywhere". Registered on `window.comfyhostPages`;
// app.js hands it its helpers (api, h, toast, fmtMs).
"use strict";

(() => {
  const pages = (window.comfyhostPages = window.comfyhostPages || {});

  /// Copies `text`; where the clipboard is not allowed, selects the token so Ctrl+C works.
  async function copy(text, node, ui) {
    try {
      await navigator.clipboard.writeText(text);
      ui.toast("Copied");
      node.dataset.copied = "1";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(node);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      node.dataset.copied = "selected";
      ui.toast("Selected: press Ctrl+C to copy");
    }
  }

  function csv(rows) {
    const cell = (v) => `"${String(v).replaceAll('"', '""')}"`;
    return ["user,token", ...rows.map((r) => `${cell(r.id)},${cell(r.token)}`)].join("\r\n") + "\r\n";
  }

  /// The sheet of users just created, with their tokens: copy each, print, or download CSV.
  function sheet(created, ui) {
    const { h } = ui;
    // A data: URL (no object URL to revoke; the page's CSP allows it for a download).
    const href = `data:text/csv;charset=utf-8,${encodeURIComponent(csv(created))}`;
    return h("div", { id: "token-sheet", class: "panel token-sheet" },
      h("h3", {}, `New tokens (shown once): ${created.length}`),
      h("p", { class: "muted no-print" }, "Hand each person their line. The host keeps only a hash: these tokens cannot be shown again."),
      h("p", { class: "no-print" },
        h("a", { id: "download-csv", class: "button", href, download: "comfyhost-users.csv" }, "Download CSV"), " ",
        h("button", { id: "print-sheet", type: "button", onclick: () => window.print() }, "Print")),
      h("table", { id: "token-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "User"), h("th", {}, "Token"), h("th", { class: "no-print" }, ""))),
        h("tbody", {}, created.map((u) => {
          const code = h("code", { class: "token" }, u.token);
          return h("tr", { "data-user": u.id }, h("td", {}, u.id), h("td", {}, code),
            h("td", { class: "no-print" }, h("button", { type: "button", class: "copy", onclick: () => copy(u.token, code, ui) }, "Copy")));
        }))));
  }

  pages.users = async function users(main, ui) {
    const { api, h, toast, fmtMs } = ui;
    const tbody = h("tbody", {});
    const out = h("div", { id: "new-user-token" });
    const created = [];

    async function refresh() {
      const list = await api("GET", "/users");
      tbody.replaceChildren(...list.map((u) => h("tr", { "data-user": u.id },
        h("td", {}, u.id), h("td", {}, u.is_admin ? "yes" : "no"), h("td", {}, fmtMs(u.created_ms)),
        h("td", {}, h("button", { class: "danger", onclick: async () => {
          if (!confirm(`Delete ${u.id}? Their sessions end at once.`)) return;
          await api("DELETE", `/users/${encodeURIComponent(u.id)}`).catch((e) => toast(e.message, true));
          await refresh();
        } }, "Delete")))));
    }

    function showCreated(users) {
      created.push(...users);
      out.replaceChildren(sheet(created, ui));
    }

    const idInput = h("input", { id: "new-user", placeholder: "user id, e.g. student-07", autocomplete: "off" });
    const admin = h("input", { id: "new-user-admin", type: "checkbox" });
    const single = h("form", { id: "new-user-form", class: "panel", onsubmit: async (e) => {
      e.preventDefault();
      try {
        const r = await api("POST", "/users", { id: idInput.value.trim(), is_admin: admin.checked });
        idInput.value = "";
        admin.checked = false;
        showCreated([{ id: r.id, token: r.token }]);
        await refresh();
      } catch (err) {
        out.replaceChildren(h("p", { class: "error-text" }, err.message));
      }
    } }, h("h3", {}, "One user"), h("label", { for: "new-user" }, "User id"), idInput, " ",
      h("label", {}, admin, " admin"), h("p", {}, h("button", { class: "primary", type: "submit" }, "Create")));

    const count = h("input", { id: "bulk-count", type: "number", min: "1", max: "500", value: "20" });
    const prefix = h("input", { id: "bulk-prefix", value: "student-" });
    const names = h("textarea", { id: "bulk-names", rows: "4", placeholder: "or one name per line" });
    const bulk = h("form", { id: "bulk-form", class: "panel", onsubmit: async (e) => {
      e.preventDefault();
      const list = names.value.split(/[\n,]/).map((n) => n.trim()).filter(Boolean);
      const body = list.length ? { names: list } : { count: Number(count.value), prefix: prefix.value.trim() };
      try {
        const r = await api("POST", "/users/bulk", body);
        names.value = "";
        showCreated(r.users);
        await refresh();
      } catch (err) {
        out.replaceChildren(h("p", { class: "error-text" }, err.message));
      }
    } }, h("h3", {}, "Many users"),
      h("p", {}, h("label", { for: "bulk-count" }, "Count "), count, " ", h("label", { for: "bulk-prefix" }, "named "), prefix, h("span", { class: "muted" }, "01, 02, …")),
      h("p", {}, names),
      h("p", {}, h("button", { class: "primary", type: "submit" }, "Create all")));

    const everywhere = h("div", { class: "panel" }, h("h3", {}, "Sessions"),
      h("p", { class: "muted" }, "Ends every signed-in session on this host, yours included (tokens keep working)."),
      h("button", { id: "sign-out-everywhere", class: "danger", onclick: async () => {
        if (!confirm("Sign everyone out, everywhere?")) return;
        await api("POST", "/session/everywhere").then(() => toast("Everyone was signed out")).catch((e) => toast(e.message, true));
      } }, "Sign out everywhere"));

    main.replaceChildren(h("h2", {}, "Workshop users"),
      h("p", { class: "muted" }, "Users sign in to the ComfyUI page with their token; they can queue prompts but not change the host."),
      h("div", { class: "panel no-print" }, h("table", { id: "users-table" },
        h("thead", {}, h("tr", {}, ["User", "Admin", "Created", ""].map((t) => h("th", {}, t)))), tbody)),
      out, h("div", { class: "no-print" }, single, bulk, everywhere));
    await refresh();
  };
})();
