// A metric (or a numeric param) across the runs of a step, oldest to newest: a small SVG
// drawn here (no charting library: one line and its points need none).
"use strict";

(function () {
  const Z = (window.zcas = window.zcas || {});
  const NS = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  };

  function draw(holder, x, col) {
    const [kind, name] = col.split("\u0000");
    const pts = [...x.rows].sort((a, b) => a.started_ns - b.started_ns)
      .map((r) => ({ r, v: r[kind][name] })).filter((p) => typeof p.v === "number");
    if (!pts.length) { holder.replaceChildren(Z.el("p", { cls: "muted", text: "no numeric values" })); return; }
    const W = 720, H = 240, P = 40;
    const lo = Math.min(...pts.map((p) => p.v)), hi = Math.max(...pts.map((p) => p.v));
    const sx = (i) => P + (pts.length === 1 ? (W - 2 * P) / 2 : (i * (W - 2 * P)) / (pts.length - 1));
    const sy = (v) => H - P - (hi === lo ? (H - 2 * P) / 2 : ((v - lo) * (H - 2 * P)) / (hi - lo));
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "plot", id: "plot", role: "img" });
    s.append(svg("line", { x1: P, y1: H - P, x2: W - P, y2: H - P, class: "axis" }), svg("line", { x1: P, y1: P, x2: P, y2: H - P, class: "axis" }));
    for (const [v, y] of [[hi, sy(hi)], [lo, sy(lo)]]) {
      const t = svg("text", { x: P - 4, y: y + 4, "text-anchor": "end", class: "tick" });
      t.textContent = String(+v.toPrecision(4));
      s.append(t);
    }
    s.append(svg("polyline", { points: pts.map((p, i) => `${sx(i)},${sy(p.v)}`).join(" "), class: "series" }));
    pts.forEach((p, i) => {
      const c = svg("circle", { cx: sx(i), cy: sy(p.v), r: 4, class: `point ${p.r.status}` });
      const tip = svg("title");
      tip.textContent = `${Z.short(p.r.id)} ${Z.when(p.r.started_ns)}: ${p.v}`;
      c.append(tip);
      c.addEventListener("click", () => { location.href = `/runs/${encodeURIComponent(p.r.id)}`; });
      s.append(c);
    });
    const label = svg("text", { x: W / 2, y: H - 8, "text-anchor": "middle", class: "tick" });
    label.textContent = "runs, oldest to newest";
    s.append(label);
    holder.replaceChildren(s);
  }

  Z.plot = function (x) {
    const el = Z.el;
    const numeric = (kind, name) => x.rows.some((r) => typeof r[kind][name] === "number");
    const choices = [...x.metrics.filter((m) => numeric("metrics", m)).map((m) => ["metrics", m]),
      ...x.params.filter((p) => numeric("params", p)).map((p) => ["params", p])];
    if (!choices.length) return null;
    const holder = el("div", {});
    const select = el("select", { id: "plot-metric" }, choices.map(([k, n]) =>
      el("option", { value: `${k}\u0000${n}`, text: `${n} (${k === "metrics" ? "metric" : "param"})` })));
    select.addEventListener("change", () => draw(holder, x, select.value));
    draw(holder, x, select.value);
    return Z.section("Plot", el("p", {}, el("label", {}, "value ", select)), holder);
  };
})();
