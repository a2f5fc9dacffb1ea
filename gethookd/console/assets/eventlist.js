// The filtered, paged, self-refreshing list of events shared by Events and Dead letters.
import { api, get, query } from "./api.js";
import { clear, h, select, short, statusBadge, table, timeEl, toast } from "./dom.js";

const STATUSES = ["received", "accepted", "queued", "delivering", "delivered",
  "retry_scheduled", "dead_letter", "replayed"];
const REFRESH_MS = 5000;
const LIMIT = 25;

// options: {fixedStatus, rowActions(event, reload) -> nodes, title, extra(filters) -> node}
export async function eventList(main, params, options = {}) {
  const [sources, destinations] = await Promise.all([get("/v1/sources"), get("/v1/destinations")]);
  const sourceName = new Map(sources.map((s) => [s.id, s.name]));

  const filters = {
    status: options.fixedStatus || params.get("status") || "",
    source_id: params.get("source_id") || "",
    destination_id: params.get("destination_id") || "",
    event_type: params.get("event_type") || "",
    since: params.get("since") || "",
    until: params.get("until") || "",
  };
  let cursor = "";
  const cursorStack = [];

  const listBox = h("div", { class: "list", "aria-live": "polite", "aria-busy": "false" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const refreshed = h("span", { class: "muted", id: "refreshed" });
  const auto = h("input", { type: "checkbox", id: "auto-refresh", checked: true });

  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter events" });
  const change = (name) => (event) => {
    filters[name] = event.target.value;
    cursor = ""; cursorStack.length = 0;
    keepInUrl();
    load();
  };
  if (!options.fixedStatus) {
    form.append(select("f-status", "Status", [["", "Any status"], ...STATUSES.map((s) => [s, s])],
      filters.status, change("status")));
  }
  form.append(select("f-source", "Source",
    [["", "Any source"], ...sources.map((s) => [s.id, s.name])], filters.source_id, change("source_id")));
  form.append(select("f-destination", "Destination",
    [["", "Any destination"], ...destinations.map((d) => [d.id, d.name])],
    filters.destination_id, change("destination_id")));
  form.append(h("div", { class: "field" }, h("label", { for: "f-type" }, "Event type"),
    h("input", { id: "f-type", name: "event_type", type: "search", value: filters.event_type,
      placeholder: "e.g. push", on: { change: change("event_type") } })));
  for (const [name, label] of [["since", "From"], ["until", "To"]]) {
    form.append(h("div", { class: "field" }, h("label", { for: `f-${name}` }, label),
      h("input", { id: `f-${name}`, name, type: "datetime-local", value: toLocalInput(filters[name]),
        on: { change: (e) => change(name)({ target: { value: fromLocalInput(e.target.value) } }) } })));
  }
  form.addEventListener("submit", (e) => e.preventDefault());
  form.append(h("div", { class: "field toggle" }, auto, h("label", { for: "auto-refresh" }, "Refresh every 5 s")));
  if (options.extra) form.append(options.extra(() => filters));

  main.append(form, h("p", { class: "muted" }, refreshed), listBox, pager);

  function keepInUrl() {
    const q = { ...filters };
    if (options.fixedStatus) delete q.status;
    history.replaceState(null, "", location.pathname + query(q));
  }

  function apiQuery() {
    const q = { ...filters, limit: LIMIT };
    if (cursor) q.cursor = cursor;
    q.include_total = "false";
    return query(q);
  }

  let loading = false;
  async function load() {
    if (loading) return;
    loading = true;
    listBox.setAttribute("aria-busy", "true");
    try {
      const page = await get(`/v1/events${apiQuery()}`);
      draw(page);
      refreshed.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      if (err.status !== 401) {
        clear(listBox).append(h("p", { class: "error", role: "alert" }, `Could not load events: ${err.message}`));
      }
    } finally {
      loading = false;
      listBox.setAttribute("aria-busy", "false");
    }
  }

  function draw(page) {
    const rows = page.items.map((e) => h("tr", {},
      h("td", {}, timeEl(e.received_at)),
      h("td", {}, h("a", { href: `/console/events/${encodeURIComponent(e.id)}`, class: "mono",
        "aria-label": `Event ${e.id}` }, short(e.id))),
      h("td", {}, e.event_type || "—"),
      h("td", {}, e.source_id ? sourceName.get(e.source_id) || short(e.source_id) : e.direction),
      h("td", {}, statusBadge(e.status)),
      h("td", { class: "num" }, String(e.attempts_count)),
      options.rowActions ? h("td", {}, options.rowActions(e, load)) : null));
    const headers = ["Received", "Event", "Type", "Source", "Status", "Attempts"];
    if (options.rowActions) headers.push("Actions");
    clear(listBox).append(rows.length
      ? table(options.title || "Events, newest first", headers, rows)
      : h("p", { class: "empty" }, "No events match these filters."));
    drawPager(page);
  }

  function drawPager(page) {
    clear(pager);
    const button = (label, enabled, go) => h("button", { type: "button", disabled: !enabled, on: { click: go } }, label);
    pager.append(
      button("Newer", cursorStack.length > 0, () => { cursor = cursorStack.pop() || ""; load(); }),
      button("Older", Boolean(page.next_cursor), () => { cursorStack.push(cursor); cursor = page.next_cursor; load(); }));
  }

  // Refresh while the page is open and visible; at once when the tab comes back.
  const timer = setInterval(() => { if (auto.checked && !document.hidden) load(); }, REFRESH_MS);
  const onVisible = () => { if (!document.hidden && auto.checked) load(); };
  document.addEventListener("visibilitychange", onVisible);
  await load();
  return {
    reload: load,
    cleanup: () => { clearInterval(timer); document.removeEventListener("visibilitychange", onVisible); },
  };
}

export function replayButton(event, after) {
  return h("button", {
    type: "button", class: "small",
    "aria-label": `Replay event ${event.id}`,
    on: {
      click: async (e) => {
        e.target.disabled = true;
        try {
          const r = await api("POST", `/v1/events/${encodeURIComponent(event.id)}/replay`);
          toast(`Replayed as event ${short(r.replay_event_id)}`);
          if (after) after(r);
        } catch (err) {
          toast(`Replay failed: ${err.message}`, "error");
          e.target.disabled = false;
        }
      },
    },
  }, "Replay");
}

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
  if (!value) return "";
  const d = new Date(value);
  return isNaN(d) ? "" : d.toISOString();
}
