// Jobs: a filterable, paginated table whose status and progress follow the event stream.
import { api, qs, session } from "../api.js";
import { fill, h } from "../dom.js";
import { follow, patchOf } from "../live.js";
import { STATUSES, errorLine, jobsTable, patchRow } from "./common.js";

export function jobsPage(root) {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const state = { status: params.get("status") || "", type: params.get("type") || "", limit: 20, cursors: [null] };
  const status = h("select", { id: "f-status", name: "status" }, h("option", { value: "" }, "any"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  status.value = state.status;
  const type = h("input", { id: "f-type", name: "type", type: "text", placeholder: "any", value: state.type, size: 14 });
  const body = h("div", { "aria-live": "polite" });
  const pager = h("div", { class: "pager" });
  let stop = null;
  let pending = null;

  async function load() {
    try {
      const page = await api(`/v1/jobs${qs({ status: state.status, type: state.type, limit: state.limit, cursor: state.cursors.at(-1) })}`);
      const tenants = session.admin;  // only an admin key sees more than one tenant
      fill(body, page.jobs.length ? jobsTable(page.jobs, { tenants }) : h("p", { class: "muted" }, "No jobs match."));
      const n = state.cursors.length;
      fill(pager, 
        h("button", { type: "button", class: "secondary", disabled: n === 1, onclick: () => { state.cursors.pop(); load(); } }, "‹ Newer"),
        h("span", { class: "muted" }, `page ${n}`),
        h("button", { type: "button", class: "secondary", disabled: !page.next_cursor, onclick: () => { state.cursors.push(page.next_cursor); load(); } }, "Older ›"));
    } catch (err) {
      fill(body, errorLine(err));
    }
  }

  function restart() {
    if (stop) stop();
    stop = follow({
      query: qs({ type: state.type, status: state.status }),
      refresh: load,
      onEvent: (ev) => {
        const row = body.querySelector(`tr[data-job-id="${CSS.escape(ev.job_id)}"]`);
        if (row) patchRow(row, patchOf(ev));
        // A new job, or one that left this filter: re-read the page (at most once a second).
        if ((!row && state.cursors.length === 1) || (row && state.status && ev.status !== state.status)) {
          clearTimeout(pending);
          pending = setTimeout(load, 1000);
        }
      },
    });
  }

  const form = h("form", { class: "filters", role: "search", onsubmit: (e) => {
    e.preventDefault();
    state.status = status.value; state.type = type.value.trim(); state.cursors = [null];
    load(); restart();
  } },
  h("div", {}, h("label", { for: "f-status" }, "Status"), status),
  h("div", {}, h("label", { for: "f-type" }, "Type"), type),
  h("button", { type: "submit" }, "Filter"));
  root.append(h("h1", {}, "Jobs"), form, body, pager);
  load();
  restart();
  return () => { if (stop) stop(); clearTimeout(pending); };
}
