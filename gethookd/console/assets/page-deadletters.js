// Dead letters: dead-lettered events, replay one, or the whole filtered set.
import { api } from "./api.js";
import { h, toast } from "./dom.js";
import { eventList, replayButton } from "./eventlist.js";

export async function render(main, { params }) {
  main.append(h("h1", {}, "Dead letters"),
    h("p", { class: "muted" }, "Events whose deliveries ran out of attempts. Replaying one delivers a fresh copy to its destinations."));
  let list = null;
  const extra = (filters) => bulkReplay(filters, () => list && list.reload());
  list = await eventList(main, params, {
    fixedStatus: "dead_letter",
    title: "Dead-lettered events, newest first",
    rowActions: (event, reload) => replayButton(event, reload),
    extra,
  });
  return list.cleanup;
}

// POST /v1/events/replay: a dry run counts the matches, then a job replays them in the
// background; its progress is polled until it ends.
function bulkReplay(getFilters, reload) {
  const progress = h("span", { id: "bulk-progress", class: "muted", role: "status" });
  const go = h("button", { type: "button", id: "bulk-replay", on: { click: run } }, "Replay all matching");
  const box = h("div", { class: "field bulk" }, go, progress);

  async function run() {
    const body = {};
    for (const [k, v] of Object.entries(getFilters())) if (v) body[k] = v;
    go.disabled = true;
    try {
      const preview = await api("POST", "/v1/events/replay", { ...body, dry_run: true });
      if (!preview.matched) { toast("No dead-lettered events match these filters."); return; }
      if (!window.confirm(`Replay ${preview.matched} dead-lettered event(s)?`)) return;
      let job = await api("POST", "/v1/events/replay", body);
      while (["pending", "running"].includes(job.state)) {
        progress.textContent = `Replaying: ${job.replayed} of ${job.total}`;
        await new Promise((done) => setTimeout(done, 1000));
        job = await api("GET", `/v1/event-replays/${encodeURIComponent(job.id)}`);
      }
      progress.textContent = `Replay ${job.state}: ${job.replayed} of ${job.total} replayed` +
        (job.skipped ? `, ${job.skipped} skipped` : "") + (job.error ? ` (${job.error})` : "");
      reload();
    } catch (err) {
      toast(`Bulk replay failed: ${err.message}`, "error");
    } finally {
      go.disabled = false;
    }
  }
  return box;
}
