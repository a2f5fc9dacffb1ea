// Deliveries by outcome per day as a stacked bar chart in inline SVG (no library).
import { h, svg, table } from "./dom.js";

const SERIES = [
  ["delivered", "Delivered"],
  ["failed", "Dead-lettered"],
  ["other", "In progress or other"],
];

export function deliveryChart(daily) {
  const days = daily.map((d) => {
    const total = (d.inbound || 0) + (d.outbound || 0);
    return { ...d, other: Math.max(0, total - (d.delivered || 0) - (d.failed || 0)), total };
  });
  const W = 720, H = 220, left = 40, right = 18, bottom = 24, top = 8;
  const max = Math.max(1, ...days.map((d) => d.total));
  const step = (W - left - right) / Math.max(1, days.length);
  const barW = Math.max(2, step * 0.7);
  const y = (v) => top + (H - top - bottom) * (1 - v / max);
  const chart = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-labelledby": "chart-title",
  }, svg("title", { id: "chart-title" }, "Events by delivery outcome per day, last 30 days"));
  for (const tick of [0, Math.round(max / 2), max]) {
    chart.append(
      svg("line", { x1: left, x2: W - right, y1: y(tick), y2: y(tick), class: "grid" }),
      svg("text", { x: left - 6, y: y(tick) + 4, class: "axis", "text-anchor": "end" }, String(tick)));
  }
  days.forEach((d, i) => {
    let base = 0;
    const x = left + i * step + (step - barW) / 2;
    for (const [key, label] of SERIES) {
      const v = d[key] || 0;
      if (!v) continue;
      chart.append(svg("rect", {
        x, width: barW, y: y(base + v), height: y(base) - y(base + v), class: `bar ${key}`,
      }, svg("title", {}, `${d.date}: ${v} ${label.toLowerCase()}`)));
      base += v;
    }
    if (i % 5 === 0 || i === days.length - 1) {
      chart.append(svg("text", { x: x + barW / 2, y: H - 6, class: "axis", "text-anchor": "middle" },
        String(d.date).slice(5)));
    }
  });
  const legend = h("ul", { class: "legend" },
    SERIES.map(([key, label]) => h("li", {}, h("span", { class: `swatch ${key}`, "aria-hidden": "true" }), label)));
  const data = h("details", {}, h("summary", {}, "The chart's figures as a table"),
    table("Events per day by outcome", ["Date", "Inbound", "Outbound", "Delivered", "Dead-lettered"],
      days.filter((d) => d.total).map((d) => h("tr", {},
        h("td", {}, d.date), h("td", {}, d.inbound), h("td", {}, d.outbound),
        h("td", {}, d.delivered), h("td", {}, d.failed)))));
  return h("figure", { class: "chart-box" }, chart, legend, data);
}
