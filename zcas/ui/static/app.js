// zcas ui: every page is filled from the JSON API (/api/...). Text from records and stored
// files goes into the page only through textContent and attributes, never as markup.
"use strict";

const Z = (window.zcas = window.zcas || {});
Z.pages = Z.pages || {};

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k === "cls") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}
Z.el = el;

async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  let body = null;
  try { body = await r.json(); } catch (e) { body = { error: `${r.status} ${r.statusText}` }; }
  if (!r.ok) throw new Error(body && body.error ? body.error : `${r.status} ${r.statusText}`);
  return body;
}
Z.api = api;

const enc = encodeURIComponent;
const short = (id) => (id ? id.slice(0, 12) : "");
Z.short = short;
function when(ns) {
  if (!ns) return "";
  const d = new Date(ns / 1e6);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
Z.when = when;
function size(n) {
  if (n === null || n === undefined) return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}
const secs = (s) => (s < 10 ? s.toFixed(3) : s.toFixed(1)) + " s";
const runLink = (id, label) => el("a", { href: `/runs/${enc(id)}`, cls: "id", text: label || short(id) });
const artLink = (id, label) => el("a", { href: `/artifacts/${enc(id)}`, cls: "id", text: label || short(id) });
const badge = (status) => el("span", { cls: `badge ${status || "unknown"}`, text: status || "?" });
Z.badge = badge;
Z.runLink = runLink;
Z.artLink = artLink;
const value = (v) => (v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v));
Z.value = value;

function table(cols, rows, attrs) {
  return el("table", attrs || {},
    el("thead", {}, el("tr", {}, cols.map((c) => el("th", { text: c })))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))));
}
Z.table = table;
function section(title, ...body) {
  return el("section", { cls: "card" }, el("h2", { text: title }), ...body);
}
Z.section = section;
function dl(pairs) {
  return el("dl", {}, pairs.filter((p) => p[1] !== null && p[1] !== undefined && p[1] !== "")
    .map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
}
Z.dl = dl;

const main = document.getElementById("app");
const content = document.getElementById("content");
const statusLine = document.getElementById("status");
function setStatus(text, isError) {
  statusLine.textContent = text || "";
  statusLine.className = isError ? "error" : "loading";
  statusLine.hidden = !text;
}
Z.setStatus = setStatus;
function setHeading(text) {
  document.getElementById("heading").textContent = text;
  document.title = `${text} · zcas`;
}
Z.setHeading = setHeading;

// -- runs -------------------------------------------------------------------------------------

Z.pages.runs = async function () {
  const params = new URLSearchParams(location.search);
  const names = await api("/api/steps");
  const opt = (list, sel) => [el("option", { value: "", text: "any" }),
    ...list.map((n) => el("option", { value: n, text: n, selected: n === sel ? "selected" : null }))];
  const form = el("form", { cls: "filters", id: "filters" },
    el("label", {}, "step ", el("select", { name: "step" }, opt(names.steps, params.get("step")))),
    el("label", {}, "pipeline ", el("select", { name: "pipeline" }, opt(names.pipelines, params.get("pipeline")))),
    el("label", {}, "status ", el("select", { name: "status" }, opt(["ran", "cached", "failed"], params.get("status")))),
    el("label", {}, "since ", el("input", { name: "since", placeholder: "7d or 2026-11-27", value: params.get("since") || "", size: 14 })),
    el("label", {}, "until ", el("input", { name: "until", placeholder: "2026-11-28T12:00", value: params.get("until") || "", size: 14 })),
    el("button", { type: "submit", text: "Filter" }),
    el("label", { cls: "live" }, el("input", { type: "checkbox", id: "live", checked: "checked" }), " live"));
  const holder = el("div", { id: "runs" });
  content.replaceChildren(form, holder);
  let page = Number(params.get("page") || 1);
  let latest = null;
  const query = () => {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    if (page > 1) q.set("page", page);
    return q;
  };
  async function load(quiet) {
    const q = query();
    history.replaceState(null, "", q.toString() ? `/runs?${q}` : "/runs");
    if (!quiet) setStatus("Loading…");
    let res;
    try { res = await api(`/api/runs?${q}`); } catch (e) { setStatus(e.message, true); return; }
    setStatus("");
    latest = res.latest;
    const rows = res.runs.map((r) => [runLink(r.id), r.step, badge(r.status), when(r.started_ns), secs(r.duration_s),
      r.host, r.user]);
    const t = table(["run", "step", "status", "started", "duration", "host", "user"], rows, { id: "runs-table", cls: "runs clickable" });
    t.querySelectorAll("tbody tr").forEach((tr, i) => tr.addEventListener("click", (ev) => {
      if (ev.target.tagName !== "A") location.href = `/runs/${enc(res.runs[i].id)}`;
    }));
    const pager = el("p", { cls: "pager" },
      page > 1 ? el("button", { text: "← newer", onclick: () => { page--; load(); } }) : null,
      ` page ${res.page} `,
      res.more ? el("button", { text: "older →", onclick: () => { page++; load(); } }) : null);
    holder.replaceChildren(res.runs.length ? t : el("p", { text: "No runs match." }), pager);
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); page = 1; load(); });
  await load();
  // Live: while the newest page is shown, look for new runs every few seconds (one small
  // request; the table is redrawn only when the newest run changed).
  setInterval(async () => {
    if (!document.getElementById("live").checked || page !== 1 || document.hidden) return;
    try {
      const r = await api(`/api/runs?per_page=1`);
      if (r.latest !== latest) load(true);
    } catch (e) { /* the next tick tries again */ }
  }, 3000);
};

// -- one run ----------------------------------------------------------------------------------

// as shlex.join would write it: an argument with anything but safe characters in single quotes
const shellWord = (a) => (/^[A-Za-z0-9_./:=@%+,-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`);

function files(list) {
  if (!list.length) return el("p", { cls: "muted", text: "none" });
  return table(["name", "id", "stored"], list.map((f) => [f.name, artLink(f.id), f.where]));
}

Z.pages.run = async function (id) {
  const r = await api(`/api/runs/${enc(id)}`);
  setHeading(`Run ${short(r.id)} · ${r.step}`);
  const parts = [];
  parts.push(section("Summary", dl([
    ["run", el("code", { text: r.id })], ["step", `${r.step} (${r.kind})`], ["status", [badge(r.status), ` exit ${r.exit_status}`]],
    ["started", when(r.started_ns)], ["duration", secs(r.duration_s)], ["host", `${r.user}@${r.host}`],
    ["zcas", r.zcas_version], ["cache key", r.cache_key ? el("code", { text: r.cache_key }) : null],
    ["cached from", r.cached_from ? runLink(r.cached_from) : null],
    ["code version", r.code ? el("code", { text: r.code.length > 80 ? r.code.slice(0, 80) + "…" : r.code }) : null],
    ["code manifest", r.code_manifest ? artLink(r.code_manifest) : null],
  ]), el("p", {}, el("a", { href: `/lineage/${enc(r.id)}`, text: "lineage graph" }), " · ",
    el("a", { href: `/experiments?step=${enc(r.step)}`, text: "experiments of this step" }))));
  const why = r.why || { lines: [] };
  const whyHead = why.kind === "cached" ? [`a cache hit: outputs restored from run `, why.from ? runLink(why.from) : "?"]
    : why.kind === "rerun" ? [`ran because, against the previous run `, runLink(why.previous), ":"]
    : why.kind === "pipeline" ? "a pipeline run: see its steps" : "";
  parts.push(section("Why did this run", el("p", {}, whyHead),
    why.lines.length ? el("ul", { id: "why" }, why.lines.map((l) => el("li", { text: l }))) : null));
  if (r.cmd) parts.push(section("Command", el("pre", { id: "cmd", text: r.cmd.map(shellWord).join(" ") }), el("p", { cls: "muted", text: `in ${r.cwd || "."}` })));
  if (r.steps && r.steps.length) parts.push(section("Steps", table(["step", "run", "status"],
    r.steps.map((s) => [s.name, runLink(s.id), badge(s.status)]))));
  parts.push(section("Inputs", files(r.inputs)));
  if (r.implicit_inputs.length) parts.push(section("Files read (implicit inputs)", files(r.implicit_inputs)));
  parts.push(section("Outputs", files(r.outputs)));
  const kv = (o) => Object.keys(o).sort().map((k) => [k, el("code", { text: value(o[k]) })]);
  if (Object.keys(r.params).length) parts.push(section("Params", table(["param", "value"], kv(r.params))));
  if (r.metrics) parts.push(section("Metrics", table(["metric", "value"], kv(r.metrics), { id: "metrics" })));
  if (Object.keys(r.env).length) parts.push(section("Environment (names only: values are never stored)",
    table(["variable", ""], Object.keys(r.env).sort().map((k) => [k, r.env[k]]))));
  parts.push(section("Key components (what the cache key covers)", table(["component", "value"],
    Object.keys(r.key_components).sort().map((k) => [k, el("code", { cls: "wrap", text: r.key_components[k] })]))));
  if (r.log) parts.push(section("Log", ...r.log.map((l) => el("div", {}, el("h3", {}, `${l.name} `, artLink(l.id)),
    l.text !== undefined ? el("pre", { cls: "log", text: l.text }) : el("p", { cls: "muted", text: `not stored here (${l.where})` }),
    l.truncated ? el("p", { cls: "muted", text: "first 64 KiB shown: download for the rest" }) : null))));
  content.replaceChildren(...parts);
};

// -- one artifact -----------------------------------------------------------------------------

function previewOf(a) {
  const p = a.preview;
  if (!p) return null;
  const more = p.truncated ? el("p", { cls: "muted", text: "first rows / bytes only" }) : null;
  if (p.type === "table") return section(`Preview (${p.format}${p.total_rows ? `, ${p.total_rows} rows` : ""})`,
    el("div", { cls: "scroll" }, table(p.columns, p.rows, { id: "preview", cls: "preview" })), more);
  if (p.type === "image") return section("Preview", el("img", { id: "preview", src: `/api/artifacts/${enc(a.id)}/image`, alt: a.names[0] || a.id }));
  if (p.type === "text" || p.type === "json") return section(`Preview (${p.type})`, el("pre", { id: "preview", cls: "log", text: p.text }), more);
  if (p.type === "none") return section("Preview", el("p", { cls: "muted", text: p.reason }));
  return section("Preview", el("p", { cls: "muted", text: "binary content" }));
}

function entries(list) {
  return table(["mode", "name", "size", "id"], list.map((e) => [e.mode, e.mode === "tree"
    ? el("a", { href: `/trees/${enc(e.id)}`, text: e.name })
    : el("a", { href: `/artifacts/${enc(e.id)}?name=${enc(e.name)}`, cls: "id", text: e.name }), e.mode === "tree" ? "" : size(e.size), short(e.id)]),
  { id: "entries" });
}

Z.pages.artifact = async function (id) {
  const hint = new URLSearchParams(location.search).get("name");
  const a = await api(`/api/artifacts/${enc(id)}` + (hint ? `?name=${enc(hint)}` : ""));
  setHeading(`${a.kind === "folder" ? "Folder" : "Artifact"} ${short(a.id)}${a.names.length ? " · " + a.names[0] : ""}`);
  const runs = (list) => (list.length ? table(["run", "step", "status", "started"],
    list.map((r) => [runLink(r.id), r.step, badge(r.status), when(r.started_ns)])) : el("p", { cls: "muted", text: "none" }));
  const parts = [section("Summary", dl([
    ["id", el("code", { text: a.id })], ["kind", a.kind || "not stored here"], ["size", a.size !== null ? `${size(a.size)} (${a.size} bytes)` : null],
    ["stored", a.where], ["known as", a.names.join(", ")], ["tags", a.tags.join(", ")],
  ]), el("p", {},
    a.kind === "file" ? el("a", { href: `/api/artifacts/${enc(a.id)}/raw`, id: "download", text: "download (verified bytes)" }) : null,
    a.kind === "file" ? " · " : null, el("a", { href: `/lineage/${enc(a.id)}`, text: "lineage graph" })))];
  const pv = previewOf(a);
  if (pv) parts.push(pv);
  if (a.entries) parts.push(section("Contents", entries(a.entries)));
  const some = (list, count, more) => (more ? [el("p", { cls: "muted", text: `${list.length} of ${count} runs shown` }), runs(list)] : [runs(list)]);
  parts.push(section("Produced by", ...some(a.produced_by, a.produced_by_count, a.produced_by_more)),
    section("Used by", ...some(a.used_by, a.used_by_count, a.used_by_more)));
  for (const h of a.history) parts.push(section(`Path history: ${h.path}`, table(["id", "recorded", "kind", "by"],
    h.versions.map((v) => [v.id === a.id ? el("strong", { text: short(v.id) }) : artLink(v.id), when(v.time_ns), v.kind,
      v.run ? runLink(v.run) : "added"]))));
  content.replaceChildren(...parts);
};

Z.pages.tree = async function (id) {
  const t = await api(`/api/trees/${enc(id)}`);
  setHeading(`Folder ${short(t.id)}`);
  content.replaceChildren(section("Contents", entries(t.entries)), el("p", {}, artLink(t.id, "about this folder")));
};

// -- data versions ----------------------------------------------------------------------------

Z.pages.data = async function () {
  const params = new URLSearchParams(location.search);
  const input = el("input", { name: "q", placeholder: "filter paths", value: params.get("q") || "" });
  const holder = el("div", {});
  const versions = el("div", { id: "versions" });
  async function load() {
    const d = await api(`/api/data?q=${enc(input.value)}`);
    holder.replaceChildren(
      section("Tags", d.tags.length ? table(["tag", "id", "kind"], d.tags.map((t) => [t.name,
        t.kind === "folder" ? el("a", { href: `/trees/${enc(t.id)}`, cls: "id", text: short(t.id) }) : artLink(t.id), t.kind]))
        : el("p", { cls: "muted", text: "no tags" })),
      section("Paths with recorded versions", table(["path", "versions", "latest", "recorded"], d.paths.map((p) => [
        el("a", { href: "#", text: p.path, onclick: (ev) => { ev.preventDefault(); showHistory(p.path); } }), p.versions,
        p.latest.kind === "tree" ? el("a", { href: `/trees/${enc(p.latest.id)}`, cls: "id", text: short(p.latest.id) }) : artLink(p.latest.id),
        when(p.latest.time_ns)]), { id: "paths" }), d.more ? el("p", { cls: "muted", text: "more paths: filter to narrow" }) : null));
  }
  async function showHistory(path) {
    const h = await api(`/api/history?path=${enc(path)}`);
    versions.replaceChildren(section(`Versions of ${h.path}`, table(["@", "id", "recorded", "kind", "by"], h.versions.map((v) => [
      String(v.number), v.kind === "tree" ? el("a", { href: `/trees/${enc(v.id)}`, cls: "id", text: short(v.id) }) : artLink(v.id),
      when(v.time_ns), v.kind, v.run ? runLink(v.run) : "added"]))));
    versions.scrollIntoView();
  }
  input.addEventListener("change", load);
  content.replaceChildren(el("p", {}, input), versions, holder);
  await load();
};

// -- experiments ------------------------------------------------------------------------------

Z.pages.experiments = async function () {
  const params = new URLSearchParams(location.search);
  const names = await api("/api/steps");
  const all = [...names.steps, ...names.pipelines];
  const chosen = params.get("step") || all[0] || "";
  const select = el("select", { id: "step", onchange: () => { location.search = `?step=${enc(select.value)}`; } },
    all.map((n) => el("option", { value: n, text: n, selected: n === chosen ? "selected" : null })));
  content.replaceChildren(el("p", {}, el("label", {}, "step or pipeline ", select)));
  if (!chosen) { content.append(el("p", { text: "No runs yet." })); return; }
  const x = await api(`/api/experiments?step=${enc(chosen)}`);
  setHeading(`Experiments · ${x.step}`);
  const cols = [
    { key: "id", label: "run", get: (r) => r.started_ns, show: (r) => runLink(r.id) },
    { key: "status", label: "status", get: (r) => r.status, show: (r) => badge(r.status) },
    { key: "started", label: "started", get: (r) => r.started_ns, show: (r) => when(r.started_ns) },
    { key: "duration", label: "duration", get: (r) => r.duration_s, show: (r) => secs(r.duration_s) },
    ...x.params.map((p) => ({ key: `param:${p}`, label: p, kind: "params", name: p, get: (r) => r.params[p], show: (r) => value(r.params[p]) })),
    ...x.metrics.map((m) => ({ key: `metric:${m}`, label: m, kind: "metrics", name: m, get: (r) => r.metrics[m], show: (r) => value(r.metrics[m]) })),
  ];
  const changed = new Set([...x.changed.params.map((p) => `param:${p}`), ...x.changed.metrics.map((m) => `metric:${m}`)]);
  // a value differs from the run before it (in time) of the same step: highlighted
  const byTime = [...x.rows].sort((a, b) => a.started_ns - b.started_ns);
  const prev = new Map(byTime.map((r, i) => [r.id, byTime[i - 1]]));
  let sort = { key: "started", dir: -1 };
  const holder = el("div", { cls: "scroll" });
  function cmp(a, b) {
    if (a === b) return 0;
    if (a === undefined || a === null) return 1;
    if (b === undefined || b === null) return -1;
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(value(a)).localeCompare(String(value(b)), undefined, { numeric: true });
  }
  function draw() {
    const col = cols.find((c) => c.key === sort.key);
    const rows = [...x.rows].sort((a, b) => sort.dir * cmp(col.get(a), col.get(b)) || b.started_ns - a.started_ns);
    const head = el("tr", {}, cols.map((c) => el("th", {
      cls: [c.kind ? c.kind : "", changed.has(c.key) ? "changed" : "", c.key === sort.key ? (sort.dir > 0 ? "asc" : "desc") : ""].join(" ").trim(),
      "data-key": c.key, title: "sort", onclick: () => { sort = { key: c.key, dir: sort.key === c.key ? -sort.dir : 1 }; draw(); },
    }, c.label)));
    const body = rows.map((r) => el("tr", { "data-run": r.id }, cols.map((c) => {
      const p = prev.get(r.id);
      const diff = c.kind && p && JSON.stringify(c.get(r)) !== JSON.stringify(c.get(p));
      return el("td", { cls: diff ? "diff" : null }, c.show(r));
    })));
    holder.replaceChildren(el("table", { id: "experiments", cls: "experiments" }, el("thead", {}, head), el("tbody", {}, body)));
  }
  draw();
  content.append(section(`${x.rows.length} runs`, el("p", { cls: "muted",
    text: "Click a column to sort. Columns whose value changes between runs are marked; a cell differing from the run before it is highlighted." }), holder));
  const plot = Z.plot ? Z.plot(x) : null;
  if (plot) content.append(plot);
};

// -- start ------------------------------------------------------------------------------------

document.querySelectorAll("[data-nav]").forEach((a) => {
  if (a.dataset.nav === main.dataset.page || (a.dataset.nav === "runs" && main.dataset.page === "run")) a.classList.add("here");
});
(async function () {
  const fn = Z.pages[main.dataset.page];
  if (!fn) { setStatus(`no page ${main.dataset.page}`, true); return; }
  try {
    await fn(main.dataset.id || undefined);
    if (statusLine.className !== "error") setStatus("");
  } catch (e) {
    setStatus(e.message, true);
  }
  document.body.dataset.ready = "1";
})();
