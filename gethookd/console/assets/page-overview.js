// Overview: events by status and the chart of deliveries by outcome over time.
import { get } from "./api.js";
import { h, statusBadge } from "./dom.js";
import { deliveryChart } from "./chart.js";

export async function render(main) {
  main.append(h("h1", {}, "Overview"));
  const stats = await get("/v1/stats");
  const counts = h("ul", { class: "counts" },
    stats.by_status.length
      ? stats.by_status.map((s) => h("li", {},
          h("a", { href: `/console/events?status=${encodeURIComponent(s.status)}` },
            statusBadge(s.status), h("strong", {}, String(s.count)))))
      : h("li", {}, "No events yet."));
  main.append(
    h("section", { "aria-labelledby": "by-status" }, h("h2", { id: "by-status" }, "Events by status"), counts),
    h("section", { "aria-labelledby": "by-day" }, h("h2", { id: "by-day" }, "Deliveries by outcome"),
      deliveryChart(stats.daily)));
}
