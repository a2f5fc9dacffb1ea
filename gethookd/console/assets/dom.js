// DOM helpers. Data only ever reaches the page as text nodes or attribute values:
// nothing here (or anywhere in the console) parses data as markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") {
      for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    } else if (name === "text") {
      el.textContent = String(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString();
}

export function timeEl(iso) {
  return iso ? h("time", { datetime: iso, title: iso }, when(iso)) : "—";
}

export function ms(value) {
  return value === null || value === undefined ? "—" : `${Math.round(value)} ms`;
}

export function pct(value) {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(1)} %`;
}

export function short(id) {
  return id ? String(id).slice(0, 8) : "—";
}

let toastTimer = 0;
export function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  box.className = `toast ${kind}`;
  box.textContent = message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.textContent = ""; box.className = "toast"; }, 6000);
}

export function statusBadge(status) {
  return h("span", { class: `badge s-${String(status).replace(/[^a-z_]/g, "")}` }, status);
}

// A select with a label; options are [value, text] pairs.
export function select(id, label, options, value, onChange) {
  const sel = h("select", { id, name: id, on: { change: onChange } },
    options.map(([v, t]) => h("option", { value: v, selected: v === value }, t)));
  return h("div", { class: "field" }, h("label", { for: id }, label), sel);
}

export function copyButton(getText, label = "Copy", ariaLabel = null) {
  return h("button", {
    type: "button", class: "small", "aria-label": ariaLabel,
    on: {
      click: async () => {
        try {
          await navigator.clipboard.writeText(getText());
          toast("Copied to the clipboard");
        } catch {
          toast("Copy failed: select the text and copy it by hand", "error");
        }
      },
    },
  }, label);
}

export function table(caption, headers, rows) {
  // Each cell names its column, so the stacked layout on a phone keeps its labels.
  for (const row of rows) {
    [...row.children].forEach((cell, i) => { if (headers[i]) cell.setAttribute("data-label", headers[i]); });
  }
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)));
}
