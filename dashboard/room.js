// comfyhost dashboard: the Room page. Per-user limits (queued prompts, prompts per minute,
// nodes per prompt; 0 = none) and the workflows quarantined because ComfyUI died handling
// them, each with a Release button. Registered on `window.comfyhostPages`; app.js hands it
// its helpers.
"use strict";

(() => {
  const pages = (window.comfyhostPages = window.comfyhostPages || {});

  pages.room = async function room(main, ui) {
    const { api, h, toast, fmtMs } = ui;
    const { limits } = await api("GET", "/limits");
    const fields = [
      ["max_queued", "Queued or running prompts per user"],
      ["max_per_minute", "Prompts per user per minute"],
      ["max_nodes", "Nodes per prompt"],
    ];
    const inputs = Object.fromEntries(fields.map(([k]) => [k, h("input", { id: `limit-${k}`, type: "number", min: "0", value: String(limits[k]) })]));
    const form = h("form", { id: "limits-form", class: "panel", onsubmit: async (e) => {
      e.preventDefault();
      const body = Object.fromEntries(fields.map(([k]) => [k, Number(inputs[k].value)]));
      await api("PUT", "/limits", body).then(() => toast("Limits saved")).catch((err) => toast(err.message, true));
    } }, h("h3", {}, "Fair limits (0 = no limit; admins are never limited)"),
      fields.map(([k, label]) => h("p", {}, h("label", { for: `limit-${k}` }, `${label} `), inputs[k])),
      h("p", {}, h("button", { class: "primary", type: "submit" }, "Save")));

    const tbody = h("tbody", {});
    async function refresh() {
      const rows = await api("GET", "/quarantine");
      tbody.replaceChildren(...(rows.length ? rows.map((q) => h("tr", { "data-sha": q.workflow_sha256 },
        h("td", {}, h("code", {}, q.workflow_sha256.slice(0, 12))), h("td", {}, q.user_id ?? "anonymous"),
        h("td", {}, String(q.nodes)), h("td", {}, q.reason), h("td", {}, fmtMs(q.created_ms)),
        h("td", {}, h("button", { class: "release", onclick: async () => {
          await api("DELETE", `/quarantine/${q.workflow_sha256}`).catch((e) => toast(e.message, true));
          await refresh();
        } }, "Release")))) : [h("tr", {}, h("td", { colspan: "6", class: "muted" }, "Nothing quarantined."))]));
    }
    main.replaceChildren(h("h2", {}, "Room"), form,
      h("div", { class: "panel" }, h("h3", {}, "Quarantined workflows"),
        h("p", { class: "muted" }, "ComfyUI died while validating or running these; they are refused until released."),
        h("table", { id: "quarantine-table" },
          h("thead", {}, h("tr", {}, ["Workflow", "User", "Nodes", "What happened", "When", ""].map((t) => h("th", {}, t)))), tbody)));
    await refresh();
  };
})();
