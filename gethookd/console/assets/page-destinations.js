// Destinations: state and why, 24 h success rate and latency, last error, pause/resume,
// and signing-secret rotation (the new secret is shown once).
import { api, get, query } from "./api.js";
import { clear, copyButton, h, ms, pct, table, timeEl, toast, when } from "./dom.js";

export async function render(main) {
  main.append(h("h1", {}, "Destinations"));
  const secretBox = h("div", { id: "secret-box", "aria-live": "polite" });
  const listBox = h("div");
  main.append(secretBox, listBox);

  async function load() {
    const [dests, stats] = await Promise.all([
      get("/v1/destinations"),
      get(`/v1/destination-stats${query({ hours: 24 })}`),
    ]);
    const byDest = new Map((stats || []).map((s) => [s.destination_id, s]));
    const rows = dests.map((d) => row(d, byDest.get(d.id)));
    clear(listBox).append(rows.length
      ? table("Destinations", ["Name and URL", "State", "Success (24 h)", "Latency p50 / p95", "Last error", "Actions"], rows)
      : h("p", { class: "empty" }, "No destinations yet."));
  }

  function row(d, s) {
    const paused = !d.active && !d.disabled_at;
    const toggle = h("button", {
      type: "button", class: "small", "aria-label": `${d.active ? "Pause" : "Resume"} ${d.name}`,
      on: {
        click: async (e) => {
          e.target.disabled = true;
          try {
            await api("PATCH", `/v1/destinations/${encodeURIComponent(d.id)}`, { active: !d.active });
            toast(`${d.name} ${d.active ? "paused" : "resumed"}`);
            await load();
          } catch (err) {
            toast(`Could not change ${d.name}: ${err.message}`, "error");
            e.target.disabled = false;
          }
        },
      },
    }, d.active ? "Pause" : "Resume");
    const rotate = h("button", {
      type: "button", class: "small", "aria-label": `Rotate the signing secret of ${d.name}`,
      on: { click: () => rotateSecret(d) },
    }, "Rotate secret");
    const err = s && s.last_error;
    return h("tr", { "data-destination": d.id },
      h("td", {}, h("strong", {}, d.name), h("br"), h("span", { class: "mono wrap" }, d.url)),
      h("td", {}, state(d, paused)),
      h("td", { class: "num" }, s ? pct(s.success_rate_pct) : "—", s ? h("br") : null,
        s ? h("span", { class: "muted" }, `${s.attempts} attempts`) : null),
      h("td", { class: "num" }, s ? `${ms(s.latency_p50_ms)} / ${ms(s.latency_p95_ms)}` : "—"),
      h("td", { class: "wrap" }, err
        ? [timeEl(err.at), h("br"), err.status_code ? `HTTP ${err.status_code}: ` : "", err.message || ""]
        : "—"),
      h("td", { class: "actions" }, toggle, rotate));
  }

  async function rotateSecret(d) {
    if (!window.confirm(`Rotate the signing secret of ${d.name}? The old one keeps signing for a grace period.`)) return;
    try {
      const r = await api("POST", `/v1/destinations/${encodeURIComponent(d.id)}/rotate-secret`, {});
      const out = h("code", { class: "secret", id: "new-secret" }, r.signing_secret);
      clear(secretBox).append(h("div", { class: "notice", role: "alert" },
        h("h2", {}, `New signing secret for ${d.name}`),
        h("p", {}, "Shown this once: store it in the receiver now. ",
          r.previous_secret_expires_at ? `The previous secret also signs until ${when(r.previous_secret_expires_at)}.` : ""),
        h("p", {}, out, " ", copyButton(() => r.signing_secret, "Copy secret")),
        h("button", { type: "button", class: "small", on: { click: () => clear(secretBox) } }, "Done, hide it")));
      secretBox.querySelector("button").focus();
    } catch (err) {
      toast(`Rotation failed: ${err.message}`, "error");
    }
  }

  await load();
}

function state(d, paused) {
  if (d.disabled_at) {
    return [h("span", { class: "badge s-dead_letter" }, "disabled"), h("br"),
      h("span", { class: "muted" }, d.disabled_reason || "disabled", " (", when(d.disabled_at), ")")];
  }
  if (paused) return h("span", { class: "badge s-received" }, "paused");
  if (d.circuit_state === "open") {
    return [h("span", { class: "badge s-retry_scheduled" }, "circuit open"), h("br"),
      h("span", { class: "muted" }, `${d.consecutive_failures} failures in a row; next try ${when(d.circuit_open_until)}`)];
  }
  if (d.circuit_state === "half_open") return h("span", { class: "badge s-delivering" }, "probing");
  return h("span", { class: "badge s-delivered" }, "active");
}
