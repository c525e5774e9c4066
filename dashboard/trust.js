// comfyhost dashboard: the plugin trust policy (#trust) and shadow mode (#shadow) pages.
// Uses the helpers app.js exposes on `window.comfyhost` and registers its pages in
// `window.comfyhostPages` (app.js looks pages up there too).

const ui = () => window.comfyhost;

// Trust policy --------------------------------------------------------------------------------

async function trust(main) {
  const { api, h, toast, route } = ui();
  const p = await api("GET", "/trust");
  const modes = [
    ["any", "Any: unsigned plugins are allowed (shown as unsigned); a signature, when present, must be valid."],
    ["signed", "Signed: any valid signature; unsigned plugins are refused."],
    ["trusted", "Trusted: only plugins signed by a key listed below."],
  ];
  const modeBox = h("fieldset", { id: "trust-mode", class: "panel" }, h("legend", {}, "Mode"),
    modes.map(([m, text]) => h("label", {},
      h("input", { type: "radio", name: "mode", value: m, checked: p.mode === m, onchange: async () => {
        try { await api("PUT", "/trust", { mode: m }); toast(`Trust mode: ${m}`); } catch (e) { toast(e.message, true); }
        route();
      } }), ` ${text}`)));
  const keys = h("table", { id: "trust-keys" },
    h("thead", {}, h("tr", {}, ["Name", "Key id", "Public key", "Added", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, p.keys.map((k) => h("tr", { "data-key": k.key_id },
      h("td", {}, k.name), h("td", { class: "mono" }, k.key_id), h("td", { class: "mono" }, k.public_key),
      h("td", {}, new Date(k.added_ms).toLocaleString()),
      h("td", {}, h("button", { class: "danger", onclick: async () => {
        try { await api("DELETE", `/trust/keys/${encodeURIComponent(k.key_id)}`); toast(`Removed ${k.name}`); } catch (e) { toast(e.message, true); }
        route();
      } }, "Remove"))))));
  const name = h("input", { id: "key-name", placeholder: "e.g. Workshop team" });
  const pk = h("textarea", { id: "key-public", placeholder: "contents of the author's .pub file (minisign public key)" });
  const add = h("form", { id: "trust-add", class: "panel", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api("POST", "/trust/keys", { name: name.value, public_key: pk.value });
      toast(`Trusted ${name.value}`);
      route();
    } catch (err) { toast(err.message, true); }
  } }, h("h3", {}, "Trust a key"), h("label", { for: "key-name" }, "Name"), name,
  h("label", { for: "key-public" }, "Public key"), pk, h("p", {}, h("button", { class: "primary", type: "submit" }, "Add key")));
  main.replaceChildren(h("h2", {}, "Trust policy"),
    h("p", { class: "muted" }, "Checked on every install, by upload and in the drop-in directory. Refusals are in the activity log with their reason. " +
      "An update signed by another key than the installed version waits for your approval on the plugin's page."),
    modeBox, h("div", { class: "panel" }, h("h3", {}, "Trusted keys"), keys), add);
}

// Shadow mode ---------------------------------------------------------------------------------

// Word-level diff of two texts: [{op: "same"|"add"|"del", text}] (LCS over words).
function wordDiff(a, b) {
  const x = String(a ?? "").split(/(\s+)/);
  const y = String(b ?? "").split(/(\s+)/);
  const n = x.length, m = y.length;
  if (n * m > 250000) return [{ op: "del", text: a }, { op: "add", text: b }];
  const L = Array.from({ length: n + 1 }, () => new Array(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { out.push({ op: "same", text: x[i] }); i++; j++; }
    else if (L[i + 1][j] >= L[i][j + 1]) out.push({ op: "del", text: x[i++] });
    else out.push({ op: "add", text: y[j++] });
  }
  while (i < n) out.push({ op: "del", text: x[i++] });
  while (j < m) out.push({ op: "add", text: y[j++] });
  return out;
}

function diffView(a, b) {
  const { h } = ui();
  return h("div", { class: "diff" }, wordDiff(a, b).map((p) => p.op === "same" ? p.text : h(p.op === "add" ? "ins" : "del", {}, p.text)));
}

function decisionRow(d) {
  const { h, badge } = ui();
  let active, shadow;
  if (d.hook === "queue-router") {
    active = d.active?.route ?? "—";
    shadow = d.fault ? h("span", { class: "error-text" }, `fault: ${d.fault}`) : (d.shadow?.route ?? "—");
  } else {
    const keys = Object.keys({ ...(d.active?.texts ?? {}), ...(d.shadow?.texts ?? {}) });
    const orig = d.active?.original ?? {};
    const pick = (side, k) => side?.texts?.[k] ?? orig[k];
    active = keys.length === 0 ? "unchanged" : h("div", {}, keys.map((k) => h("div", {}, h("span", { class: "muted" }, `${k}: `), diffView(orig[k], pick(d.active, k)))));
    shadow = d.fault ? h("span", { class: "error-text" }, `fault: ${d.fault}`)
      : keys.length === 0 ? "unchanged"
        : h("div", {}, keys.map((k) => h("div", {}, h("span", { class: "muted" }, `${k}: `), diffView(pick(d.active, k), pick(d.shadow, k)))));
  }
  return h("tr", { class: d.agreed ? "agree" : "disagree", "data-prompt": d.prompt_id },
    h("td", {}, new Date(d.ts_ms).toLocaleTimeString()), h("td", { class: "mono" }, d.prompt_id.slice(0, 8)),
    h("td", {}, active), h("td", {}, shadow), h("td", {}, d.agreed ? badge("agrees") : badge("differs")), h("td", {}, `${d.latency_ms} ms`));
}

async function shadow(main) {
  const { api, h, toast, route, badge } = ui();
  const data = await api("GET", "/shadow");
  const cards = data.shadows.map((s) => {
    const sum = s.summary;
    const pct = sum.agreement_pct == null ? "—" : `${Math.round(sum.agreement_pct)} %`;
    const act = (what) => async () => {
      try {
        const r = await api("POST", `/shadow/${encodeURIComponent(s.id)}/${what}`);
        toast(what === "promote" ? `${s.id} ${r.version} is active: ${r.state.state}` : `Discarded the shadow ${s.id}`);
      } catch (e) { toast(e.message, true); }
      route();
    };
    return h("div", { class: "panel shadow-plugin", "data-shadow": s.id },
      h("h3", {}, `${s.name} (${s.id}) ${s.version}`, " ", badge("shadow")),
      h("p", { class: "muted" }, `${s.hook} · signed: ${s.signer.key_id ? `${s.signer.key_id}${s.signer.key_name ? ` (${s.signer.key_name})` : ""}` : "unsigned"}` +
        ` · active version: ${s.active_version ?? "none"}`),
      h("div", { class: "tiles" },
        h("div", { class: "tile" }, h("h4", {}, "Agreement"), h("div", { class: "value agreement" }, pct)),
        h("div", { class: "tile" }, h("h4", {}, "Decisions"), h("div", { class: "value" }, sum.decisions)),
        h("div", { class: "tile" }, h("h4", {}, "Faults"), h("div", { class: "value faults" }, sum.faults)),
        h("div", { class: "tile" }, h("h4", {}, "Latency"), h("div", { class: "value" }, sum.latency_ms_mean == null ? "—" : `mean ${sum.latency_ms_mean.toFixed(1)} ms · max ${sum.latency_ms_max} ms`))),
      h("table", { class: "shadow-decisions" },
        h("thead", {}, h("tr", {}, ["When", "Prompt", "Active chain did", "Shadow would have", "", "Latency"].map((t) => h("th", {}, t)))),
        h("tbody", {}, s.decisions.map(decisionRow))),
      h("p", {}, h("button", { class: "primary promote", onclick: act("promote") }, "Promote (make active)"), " ",
        h("button", { class: "danger discard", onclick: act("discard") }, "Discard")));
  });
  const out = h("div", { id: "shadow-result" });
  const form = h("form", { id: "shadow-form", class: "panel", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const info = await api("POST", "/shadow", undefined, { form: new FormData(form) });
      toast(`${info.id} ${info.version} runs in shadow`);
      route();
    } catch (err) { out.replaceChildren(h("p", { class: "error-text" }, err.message)); }
  } }, h("h3", {}, "Install in shadow"),
  h("label", {}, "plugin.toml"), h("input", { name: "manifest", type: "file", accept: ".toml", required: true }),
  h("label", {}, "Component (.wasm)"), h("input", { name: "wasm", type: "file", accept: ".wasm", required: true }),
  h("label", {}, "Config schema (optional)"), h("input", { name: "schema", type: "file", accept: ".json" }),
  h("label", {}, "Signature plugin.minisig (optional)"), h("input", { name: "signature", type: "file" }),
  h("label", {}, "Public key plugin.pub (optional)"), h("input", { name: "public_key", type: "file" }),
  h("p", {}, h("button", { class: "primary", type: "submit" }, "Install in shadow")), out);
  main.replaceChildren(h("h2", {}, "Shadow mode"),
    h("p", { class: "muted" }, "A queue-router or prompt-transform plugin in shadow is called on live prompts after the active chain answered; " +
      "what it would have done is shown here and never applied. It runs with no capabilities and cannot fail or delay a prompt."),
    ...(cards.length ? cards : [h("p", { class: "muted", id: "no-shadows" }, "No plugin runs in shadow.")]), form);
}

window.comfyhostPages = { ...(window.comfyhostPages ?? {}), trust, shadow };
// app.js may have routed before this file loaded.
if (/^#(trust|shadow)/.test(location.hash) && window.comfyhost) window.comfyhost.route();
