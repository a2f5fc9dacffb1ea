// The console's shell: session check, navigation (History API) and the page router.
import { api, setCsrf, whenSignedOut } from "./api.js";
import { clear, h, toast } from "./dom.js";

const ROUTES = [
  [/^\/console\/?$/, () => import("./page-overview.js")],
  [/^\/console\/events\/?$/, () => import("./page-events.js")],
  [/^\/console\/events\/([0-9a-f-]{36})\/?$/, () => import("./page-event.js")],
  [/^\/console\/dead-letters\/?$/, () => import("./page-deadletters.js")],
  [/^\/console\/destinations\/?$/, () => import("./page-destinations.js")],
  [/^\/console\/sources\/?$/, () => import("./page-sources.js")],
  [/^\/console\/sign-in\/?$/, () => import("./page-signin.js")],
];

const main = document.getElementById("main");
let session = null;
let sessionKnown = false; // until the first check answers, pages draw (and 401 if need be)
let cleanup = null;
let renderToken = 0;

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

export function signedIn(data) {
  session = data;
  sessionKnown = true;
  setCsrf(data.csrf_token);
  showChrome();
}

function showChrome() {
  document.getElementById("nav").hidden = !session;
  document.getElementById("account").hidden = !session;
  document.getElementById("account-name").textContent = session ? session.account.name : "";
}

function signedOut() {
  session = null;
  sessionKnown = true;
  setCsrf(null);
  showChrome();
  if (!location.pathname.startsWith("/console/sign-in")) {
    const next = location.pathname + location.search;
    navigate(`/console/sign-in?next=${encodeURIComponent(next)}`, { replace: true });
  }
}

async function render() {
  const token = ++renderToken;
  if (cleanup) { cleanup(); cleanup = null; }
  const path = location.pathname;
  let match = null;
  let loader = null;
  for (const [re, load] of ROUTES) {
    match = path.match(re);
    if (match) { loader = load; break; }
  }
  if (sessionKnown && !session && !path.startsWith("/console/sign-in")) {
    signedOut();
    return;
  }
  for (const link of document.querySelectorAll("#nav a")) {
    const here = link.getAttribute("href");
    const current = here === "/console/" ? path === "/console" || path === "/console/" : path.startsWith(here);
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clear(main);
  if (!loader) {
    main.append(h("h1", {}, "Not found"), h("p", {}, "This console page does not exist."));
    return;
  }
  // Each render draws into its own box: one overtaken by a later navigation draws into a
  // detached box, and its timers are stopped as soon as it finishes.
  const view = h("div", { class: "view" });
  main.append(view);
  const page = await loader();
  if (token !== renderToken) return;
  const params = new URLSearchParams(location.search);
  try {
    const stop = (await page.render(view, { match, params, navigate, signedIn, session })) || null;
    if (token === renderToken) cleanup = stop;
    else if (stop) stop();
  } catch (err) {
    if (token !== renderToken) return;
    if (err.status === 401) return;
    view.append(h("p", { class: "error", role: "alert" }, `Could not load this page: ${err.message}`));
  }
  if (token === renderToken) {
    // bench/console_pages.py reads this mark: the page drawn with its API answers.
    performance.mark("console:rendered");
    const heading = main.querySelector("h1");
    document.title = heading ? `${heading.textContent} · gethookd` : "gethookd console";
  }
}

// Internal links navigate without a reload; modifier clicks open tabs as usual.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href^='/console']");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || link.target) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
  main.focus();
});
window.addEventListener("popstate", render);

document.getElementById("sign-out").addEventListener("click", async () => {
  try {
    await api("DELETE", "/v1/console/session");
  } catch (err) {
    if (err.status !== 401) { toast(`Sign-out failed: ${err.message}`, "error"); return; }
  }
  signedOut();
  toast("Signed out");
});

whenSignedOut(signedOut);

// The session check and the first page's own API calls run side by side: a page drawn
// without a session gets 401s, which lead to the sign-in page as the check itself would.
function start() {
  api("GET", "/v1/console/session").then(signedIn, signedOut);
  render();
}
start();
