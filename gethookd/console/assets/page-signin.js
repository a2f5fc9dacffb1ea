// Sign in with email and password, or with an API key.
import { api } from "./api.js";
import { h } from "./dom.js";

export function render(main, { params, navigate, signedIn }) {
  const error = h("p", { class: "error", role: "alert", id: "signin-error" });
  const creds = h("div", { id: "with-password" },
    field("email", "Email", "email", "username"),
    field("password", "Password", "password", "current-password"));
  const keyBox = h("div", { id: "with-key", hidden: true },
    field("api_key", "API key", "password", "off"));

  const choose = (useKey) => {
    creds.hidden = useKey;
    keyBox.hidden = !useKey;
    for (const input of creds.querySelectorAll("input")) input.required = !useKey;
    keyBox.querySelector("input").required = useKey;
  };
  const mode = h("fieldset", { class: "mode" },
    h("legend", {}, "Sign in with"),
    radio("mode-password", "Email and password", true, () => choose(false)),
    radio("mode-key", "API key", false, () => choose(true)));

  const form = h("form", { class: "signin", novalidate: false }, mode, creds, keyBox, error,
    h("button", { type: "submit", class: "primary", id: "signin-submit" }, "Sign in"));
  choose(false);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const useKey = !keyBox.hidden;
    const body = useKey
      ? { api_key: form.api_key.value.trim() }
      : { email: form.email.value.trim(), password: form.password.value };
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      signedIn(await api("POST", "/v1/console/session", body));
      const next = params.get("next");
      navigate(next && next.startsWith("/console") && !next.startsWith("/console/sign-in") ? next : "/console/", { replace: true });
    } catch (err) {
      error.textContent = err.status === 429
        ? `Too many attempts: ${err.message}`
        : err.status === 401 ? "Those credentials were not accepted." : err.message;
      button.disabled = false;
    }
  });

  main.append(h("section", { class: "narrow" }, h("h1", {}, "Sign in"), form));
}

function field(name, label, type, autocomplete) {
  const id = `signin-${name}`;
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("input", { id, name, type, autocomplete, required: true }));
}

function radio(id, label, checked, onChange) {
  return h("label", { class: "radio", for: id },
    h("input", { type: "radio", id, name: "mode", checked, on: { change: onChange } }), ` ${label}`);
}
