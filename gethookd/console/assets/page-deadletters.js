// Dead letters: dead-lettered events, replay one, or (where the API has it) the filtered set.
import { api, capabilities } from "./api.js";
import { h, toast } from "./dom.js";
import { eventList, replayButton } from "./eventlist.js";

export async function render(main, { params }) {
  main.append(h("h1", {}, "Dead letters"),
    h("p", { class: "muted" }, "Events whose deliveries ran out of attempts. Replaying one delivers a fresh copy to its destinations."));
  const caps = await capabilities();
  let list = null;
  const extra = caps.bulkReplay ? (filters) => bulkReplay(filters, () => list && list.reload()) : undefined;
  list = await eventList(main, params, {
    fixedStatus: "dead_letter",
    title: "Dead-lettered events, newest first",
    rowActions: (event, reload) => replayButton(event, reload),
    extra,
  });
  return list.cleanup;
}

function bulkReplay(getFilters, reload) {
  const box = h("div", { class: "field bulk" });
  const go = h("button", { type: "button", id: "bulk-replay", on: { click: run } }, "Replay all matching");
  box.append(go);

  async function run() {
    const body = {};
    for (const [k, v] of Object.entries(getFilters())) if (v) body[k] = v;
    go.disabled = true;
    try {
      const preview = await api("POST", "/v1/events/replay", { ...body, dry_run: true });
      const count = preview.count ?? preview.matched ?? preview.total ?? 0;
      if (!count) { toast("No dead-lettered events match these filters."); return; }
      if (!window.confirm(`Replay ${count} dead-lettered event(s)?`)) return;
      const done = await api("POST", "/v1/events/replay", body);
      toast(`Replayed ${done.count ?? done.replayed ?? count} event(s)`);
      reload();
    } catch (err) {
      toast(`Bulk replay failed: ${err.message}`, "error");
    } finally {
      go.disabled = false;
    }
  }
  return box;
}
