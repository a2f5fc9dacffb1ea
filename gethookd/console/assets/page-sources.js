// Sources: ingest URL with a copy button, verification mode, events in the last 24 hours.
import { get, query } from "./api.js";
import { copyButton, h, table } from "./dom.js";

export async function render(main) {
  main.append(h("h1", {}, "Sources"));
  const [sources, stats] = await Promise.all([
    get("/v1/sources"),
    get(`/v1/source-stats${query({ hours: 24 })}`),
  ]);
  const counts = new Map((stats || []).map((s) => [s.source_id, s.events]));
  const rows = sources.map((s) => h("tr", {},
    h("td", {}, h("strong", {}, s.name), s.provider ? h("span", { class: "muted" }, ` (${s.provider})`) : null),
    h("td", { class: "ingest" },
      h("code", { class: "mono wrap" }, s.ingest_url), " ",
      copyButton(() => s.ingest_url, "Copy URL", `Copy the ingest URL of ${s.name}`)),
    h("td", {}, verification(s)),
    h("td", { class: "num" }, stats ? String(counts.get(s.id) ?? 0) : "—",
      " ", h("a", { href: `/console/events${query({ source_id: s.id })}`, "aria-label": `Events of ${s.name}` }, "list"))));
  main.append(rows.length
    ? table("Sources", ["Name", "Ingest URL", "Verification", "Events (24 h)"], rows)
    : h("p", { class: "empty" }, "No sources yet."));
}

function verification(s) {
  if (!s.auth_mode || s.auth_mode === "none") return "none";
  return s.auth_mode;
}
