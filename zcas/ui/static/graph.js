// The lineage page: runs and artifacts as an interactive graph (Cytoscape.js, laid out left
// to right by dagre; a graph too large for dagre to lay out quickly is ranked here instead).
"use strict";

(function () {
  const Z = (window.zcas = window.zcas || {});
  Z.pages = Z.pages || {};
  const DAGRE_MAX = 400; // nodes; above this a layered layout computed here keeps the page interactive

  // Longest-path ranks along the edges (inputs -> run -> outputs), then nodes spread within a rank.
  function layered(nodes, edges) {
    const out = new Map(nodes.map((n) => [n.id, []]));
    const indeg = new Map(nodes.map((n) => [n.id, 0]));
    for (const e of edges) { out.get(e.from).push(e.to); indeg.set(e.to, indeg.get(e.to) + 1); }
    const rank = new Map(nodes.map((n) => [n.id, 0]));
    const queue = nodes.filter((n) => indeg.get(n.id) === 0).map((n) => n.id);
    const left = new Map(indeg);
    for (let i = 0; i < queue.length; i++) {
      const v = queue[i];
      for (const w of out.get(v)) {
        rank.set(w, Math.max(rank.get(w), rank.get(v) + 1));
        left.set(w, left.get(w) - 1);
        if (left.get(w) === 0) queue.push(w);
      }
    }
    const rows = new Map();
    const pos = {};
    for (const n of nodes) {
      const r = rank.get(n.id);
      const k = rows.get(r) || 0;
      rows.set(r, k + 1);
      pos[n.id] = { x: r * 220, y: k * 50 };
    }
    return pos;
  }

  // Labels are cut here, not by Cytoscape's text-wrap "ellipsis" (which measures each label
  // again and again: on 1,000 nodes it costs most of a second).
  const cut = (t) => (t.length > 26 ? t.slice(0, 25) + "…" : t);

  function style(big) {
    return [
      { selector: "node", style: { label: "data(label)", "font-size": 11, "text-valign": "center", "text-halign": "center",
        color: "#1b1f24", width: 160, height: 30, "min-zoomed-font-size": big ? 7 : 0 } },
      { selector: "node.run", style: { shape: "round-rectangle", "background-color": "#cfe8d5", "border-width": 2, "border-color": "#2f8a4a" } },
      { selector: "node.run.cached", style: { "background-color": "#d6e4f5", "border-color": "#3568a8" } },
      { selector: "node.run.failed", style: { "background-color": "#f6d3d3", "border-color": "#b3261e" } },
      { selector: "node.artifact", style: { shape: "rectangle", "background-color": "#f3f1ea", "border-width": 1, "border-color": "#9a9382", height: 24 } },
      { selector: "node.root", style: { "border-width": 4, "border-color": "#e0a100" } },
      { selector: "node:selected", style: { "overlay-opacity": 0.15, "overlay-color": "#e0a100" } },
      { selector: "edge", style: { width: 1.2, "line-color": "#9aa4ae", "target-arrow-color": "#9aa4ae", "target-arrow-shape": "triangle",
        "curve-style": big ? "straight" : "bezier", "arrow-scale": 0.8 } },
    ];
  }

  Z.pages.lineage = async function (id) {
    const { el, api, section, dl, runLink, artLink, short, when, badge } = Z;
    const params = new URLSearchParams(location.search);
    const depth = el("input", { type: "number", id: "depth", min: 1, max: 100, value: params.get("depth") || 3, size: 3 });
    const direction = el("select", { id: "direction" }, ["both", "up", "down"].map((d) =>
      el("option", { value: d, text: d === "up" ? "ancestors" : d === "down" ? "descendants" : "both", selected: (params.get("direction") || "both") === d ? "selected" : null })));
    const controls = el("form", { cls: "filters" }, el("label", {}, "depth ", depth), el("label", {}, "show ", direction),
      el("button", { type: "submit", text: "Redraw" }), el("button", { type: "button", id: "fit", text: "Fit" }),
      el("span", { cls: "legend" }, badge("ran"), badge("cached"), badge("failed"), el("span", { cls: "badge artifact", text: "artifact" })));
    controls.addEventListener("submit", (ev) => {
      ev.preventDefault();
      location.search = `?depth=${encodeURIComponent(depth.value)}&direction=${encodeURIComponent(direction.value)}`;
    });
    const box = el("div", { id: "graph", cls: "graph" });
    const side = el("aside", { id: "selected", cls: "card side" }, el("p", { cls: "muted", text: "Click a node to see it; double-click opens it." }));
    const t0 = performance.now();
    const g = await api(`/api/lineage/${encodeURIComponent(id)}?depth=${encodeURIComponent(depth.value)}&direction=${encodeURIComponent(direction.value)}`);
    Z.setHeading(g.pipeline ? `Pipeline ${g.pipeline.step} · ${short(g.root)}` : `Lineage of ${short(g.root)}`);
    const note = el("p", { cls: "muted", id: "graph-note", text: `${g.nodes.length} nodes, ${g.edges.length} edges` +
      (g.truncated ? " (cut: too large to draw whole)" : "") + (g.pipeline ? ` · pipeline run ${g.pipeline.status}` : "") });
    Z.setStatus("");
    document.getElementById("content").replaceChildren(controls, note, el("div", { cls: "graph-wrap" }, box, side));
    const byId = new Map(g.nodes.map((n) => [n.id, n]));
    const elements = [
      ...g.nodes.map((n) => ({ group: "nodes", data: { id: n.id, label: cut(n.type === "run" ? n.label : n.label || short(n.id)) },
        classes: [n.type, n.status || "", n.id === g.root ? "root" : ""].join(" ").trim() })),
      ...g.edges.map((e, i) => ({ group: "edges", data: { id: `e${i}`, source: e.from, target: e.to } })),
    ];
    const big = g.nodes.length > DAGRE_MAX;
    const layout = big ? { name: "preset", positions: layered(g.nodes, g.edges) }
      : { name: "dagre", rankDir: "LR", nodeSep: 12, rankSep: 60, animate: false };
    const cy = cytoscape({ container: box, elements, style: style(big), layout, pixelRatio: big ? 1 : "auto",
      minZoom: 0.02, maxZoom: 4, textureOnViewport: big, hideEdgesOnViewport: big });
    Z.graph = cy;
    document.getElementById("fit").addEventListener("click", () => cy.fit(undefined, 20));
    cy.on("tap", "node", (ev) => {
      const n = byId.get(ev.target.id());
      const open = n.type === "run" ? runLink(n.id, "open run") : artLink(n.id, "open artifact");
      side.replaceChildren(el("h2", { text: n.type === "run" ? n.label : "artifact" }), dl([
        ["id", el("code", { text: short(n.id) })], ["status", n.status ? badge(n.status) : null], ["started", n.started_ns ? when(n.started_ns) : null],
        ["known as", n.type === "artifact" ? n.label : null]]), el("p", {}, open, " · ",
        el("a", { href: `/lineage/${encodeURIComponent(n.id)}?depth=${encodeURIComponent(depth.value)}`, text: "centre here" })));
    });
    cy.on("dbltap", "node", (ev) => {
      const n = byId.get(ev.target.id());
      location.href = n.type === "run" ? `/runs/${encodeURIComponent(n.id)}` : `/artifacts/${encodeURIComponent(n.id)}`;
    });
    const root = cy.getElementById(g.root);
    if (root.nonempty() && g.nodes.length > 60) { cy.zoom(0.8); cy.center(root); }  // readable, at the node asked for
    cy.ready(() => {
      requestAnimationFrame(() => {
        document.body.dataset.graphMs = String(Math.round(performance.now() - t0));  // from the API request
        document.body.dataset.graphAt = String(Math.round(performance.now()));  // from navigation start
        document.body.dataset.graphNodes = String(cy.nodes().length);
      });
    });
  };
})();
