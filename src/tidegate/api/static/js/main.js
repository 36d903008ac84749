// The dashboard's shell: sign-in, navigation, and the hash routes of its pages.
import { api, session } from "./api.js";
import { h, clear } from "./dom.js";
import { jobsPage } from "./pages/jobs.js";
import { jobPage } from "./pages/job.js";
import { queuesPage } from "./pages/queues.js";
import { lanesPage } from "./pages/lanes.js";
import { deadPage } from "./pages/dead.js";
import { submitPage } from "./pages/submit.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let stopPage = null;

const ROUTES = [
  [/^#\/jobs\/([\w-]+)$/, (m) => jobPage(main, m[1])],
  [/^#\/jobs(\?.*)?$/, () => jobsPage(main)],
  [/^#\/submit(\?.*)?$/, () => submitPage(main)],
  [/^#\/queues$/, () => queuesPage(main)],
  [/^#\/lanes$/, () => lanesPage(main)],
  [/^#\/dead$/, () => deadPage(main)],
];

function signIn() {
  nav.hidden = true;
  const key = h("input", { id: "key", type: "password", autocomplete: "off", required: true, placeholder: "tg_…" });
  const msg = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "card signin", onsubmit: async (e) => {
    e.preventDefault();
    msg.textContent = "";
    try {
      const me = await api("/v1/me", { key: key.value.trim() });
      session.set(key.value.trim(), me);
      if (!location.hash || location.hash === "#/signin") location.hash = "#/jobs";
      route();
    } catch (err) {
      msg.textContent = err.status === 401 ? "That key was not accepted." : `Could not sign in: ${err.message}`;
    }
  } },
  h("h1", {}, "Sign in"),
  h("p", { class: "muted" }, "Paste an API key (tidegate up prints one; it is also in .tidegate/api_key). It is kept only in this browser tab's session."),
  h("label", { for: "key" }, "API key"), key, msg,
  h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")));
  clear(main).append(form);
  key.focus();
}

function route() {
  if (stopPage) { stopPage(); stopPage = null; }
  if (!session.key) { signIn(); return; }
  nav.hidden = false;
  const me = session.me;
  document.getElementById("who").textContent = me ? `${me.tenant} · ${me.scope}` : "";
  const hash = location.hash || "#/jobs";
  for (const a of nav.querySelectorAll("a")) {
    const href = a.getAttribute("href");
    const here = hash.split("?")[0] === href || (href === "#/jobs" && hash.startsWith("#/jobs/"));
    if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  for (const [re, page] of ROUTES) {
    const m = hash.match(re);
    if (m) {
      clear(main);
      stopPage = page(m) || null;
      return;
    }
  }
  location.hash = "#/jobs";
}

document.getElementById("signout").addEventListener("click", () => { session.clear(); signIn(); });
window.addEventListener("tidegate:unauthorized", () => { session.clear(); route(); });
window.addEventListener("hashchange", () => { route(); main.focus({ preventScroll: true }); });
route();
