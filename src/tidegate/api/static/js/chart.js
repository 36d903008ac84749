// A small line chart in SVG: series of numbers sampled over time, newest on the right.
import { h, svg } from "./dom.js";
import { localClock } from "./format.js";

export const COLORS = ["#0b63c5", "#d9480f", "#1a7f37", "#7048e8", "#9a6700", "#b42318"];

export class History {
  constructor(size = 120) { this.size = size; this.samples = []; }
  push(values) {
    this.samples.push({ at: Date.now(), values });
    if (this.samples.length > this.size) this.samples.shift();
  }
  series(name) { return this.samples.map((s) => s.values[name] ?? 0); }
  get since() { return this.samples.length ? this.samples[0].at : null; }
}

// series: [{name, values: number[], dashed?}]; since: when the first sample was taken (ms).
// The SVG stretches to its box (preserveAspectRatio none), so the axis labels are HTML laid
// over it: SVG text would be stretched with it.
export function lineChart(series, { label, unit = "", since = null }) {
  const W = 600, H = 140, P = 22;
  const top = Math.max(...series.flatMap((s) => s.values), 0);
  const max = top <= 4 ? 4 : top; // keeps the axis labels whole numbers when all is quiet
  const n = Math.max(2, ...series.map((s) => s.values.length));
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, preserveAspectRatio: "none" });
  const yLabels = [];
  for (const frac of [0, 0.5, 1]) {
    const y = H - P - frac * (H - 2 * P);
    root.append(svg("line", { x1: P, x2: W - 4, y1: y, y2: y, stroke: "#e3e6ec", "vector-effect": "non-scaling-stroke" }));
    yLabels.push(h("span", { class: "chart-y", style: { top: `${((y - 12) / H) * 100}%` } }, `${Math.round(max * frac)}${unit}`));
  }
  series.forEach((s, k) => {
    if (!s.values.length) return;
    const values = s.values.length === 1 ? [s.values[0], s.values[0]] : s.values;
    const pts = values.map((v, i) => {
      const x = P + (i + (n - values.length)) * ((W - P - 4) / (n - 1));
      const y = H - P - (v / max) * (H - 2 * P);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    root.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: COLORS[k % COLORS.length], "stroke-width": 2, "stroke-dasharray": s.dashed ? "6 4" : "none", "vector-effect": "non-scaling-stroke" }));
  });
  const legend = h("div", { class: "legend" }, series.map((s, k) => h("span", {}, h("i", { style: { background: COLORS[k % COLORS.length] } }), s.name)));
  const xAxis = h("div", { class: "chart-x muted" },
    h("span", {}, since ? `since ${localClock(since)}` : ""), h("span", {}, "now"));
  return h("figure", { class: "card" }, h("figcaption", { class: "muted" }, label),
    h("div", { class: "chart-box" }, root, yLabels), xAxis, legend);
}
