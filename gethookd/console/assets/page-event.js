// One event: body (JSON pretty-printed, text as text, binary as hex), headers, attempts, replay.
import { get } from "./api.js";
import { h, ms, short, statusBadge, table, timeEl } from "./dom.js";
import { replayButton } from "./eventlist.js";

export async function render(main, { match, navigate }) {
  const id = match[1];
  const [detail, destinations] = await Promise.all([
    get(`/v1/events/${encodeURIComponent(id)}`), get("/v1/destinations")]);
  const { event, attempts } = detail;
  const destName = new Map(destinations.map((d) => [d.id, d.name]));

  const facts = h("dl", { class: "facts" },
    fact("Id", h("span", { class: "mono" }, event.id)),
    fact("Status", statusBadge(event.status)),
    fact("Direction", event.direction),
    fact("Event type", event.event_type || "—"),
    fact("Received", timeEl(event.received_at)),
    fact("Attempts", String(event.attempts_count)),
    fact("Next attempt", timeEl(event.next_attempt_at)),
    event.external_event_id ? fact("Provider's id", event.external_event_id) : null,
    event.replay_of ? fact("Replay of", h("a", { href: `/console/events/${encodeURIComponent(event.replay_of)}` }, short(event.replay_of))) : null,
    event.payload_hash ? fact("Payload hash", h("span", { class: "mono" }, event.payload_hash)) : null);

  const contentType = headerValue(event.headers, "content-type");
  const body = renderBody(event.body, contentType, detail.body_base64);
  const headers = table("Headers", ["Name", "Value"],
    Object.entries(event.headers || {}).map(([k, v]) =>
      h("tr", {}, h("th", { scope: "row", class: "mono" }, k), h("td", { class: "mono wrap" }, String(v)))));

  const attemptRows = attempts.map((a) => h("tr", {},
    h("td", { class: "num" }, String(a.attempt_number)),
    h("td", {}, timeEl(a.started_at)),
    h("td", {}, destName.get(a.destination_id) || short(a.destination_id)),
    h("td", {}, statusBadge(a.outcome)),
    h("td", { class: "num" }, a.response_status === null || a.response_status === undefined ? "—" : String(a.response_status)),
    h("td", { class: "num" }, ms(a.latency_ms)),
    h("td", {}, a.response_body ? h("pre", { class: "snippet" }, a.response_body) : "—"),
    h("td", { class: "wrap" }, a.error_message || "—")));

  main.append(
    h("p", {}, h("a", { href: "/console/events" }, "← All events")),
    h("div", { class: "title-row" }, h("h1", {}, `Event ${short(event.id)}`),
      replayButton(event, (r) => navigate(`/console/events/${encodeURIComponent(r.replay_event_id)}`))),
    facts,
    h("section", { "aria-labelledby": "body-h" }, h("h2", { id: "body-h" }, `Body (${body.kind})`), body.node),
    h("section", { "aria-labelledby": "headers-h" }, h("h2", { id: "headers-h" }, "Headers"), headers),
    h("section", { "aria-labelledby": "attempts-h" }, h("h2", { id: "attempts-h" }, "Delivery attempts"),
      attemptRows.length
        ? table("Every delivery attempt, oldest first", ["#", "Time", "Destination", "Outcome", "Status", "Latency", "Response body", "Error"], attemptRows)
        : h("p", { class: "empty" }, "No delivery attempts yet.")));
}

function fact(term, value) {
  return h("div", {}, h("dt", {}, term), h("dd", {}, value));
}

function headerValue(headers, name) {
  for (const [k, v] of Object.entries(headers || {})) if (k.toLowerCase() === name) return String(v);
  return "";
}

// "binary" means: declared binary, not UTF-8, or holding control characters; its hex dump
// is of the exact bytes (body_base64), since the text form replaces what is not UTF-8.
export function renderBody(text, contentType, base64) {
  const ct = contentType.toLowerCase();
  if (ct.includes("json") || /^\s*[[{]/.test(text)) {
    try {
      return { kind: "JSON", node: h("pre", { class: "body", id: "event-body" }, JSON.stringify(JSON.parse(text), null, 2)) };
    } catch { /* not JSON after all: fall through */ }
  }
  const binaryType = /octet-stream|^image\/|^audio\/|^video\/|protobuf|msgpack|zip|gzip/.test(ct);
  if (binaryType || /[\uFFFD\u0000-\u0008\u000E-\u001F]/.test(text)) {
    return { kind: "binary, hex", node: h("pre", { class: "body", id: "event-body" }, hexDump(base64 ? fromBase64(base64) : new TextEncoder().encode(text))) };
  }
  return { kind: ct ? ct.split(";")[0] : "text", node: h("pre", { class: "body", id: "event-body" }, text) };
}

function fromBase64(b64) {
  const raw = atob(b64);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function hexDump(bytes) {
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const chunk = Array.from(bytes.slice(i, i + 16));
    const hex = chunk.map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = chunk.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${i.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join("\n");
}
