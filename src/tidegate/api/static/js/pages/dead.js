// Dead letters: the failed jobs, each replayable, or all of those shown at once.
import { api, qs, session } from "../api.js";
import { fill, h, toast } from "../dom.js";
import { follow } from "../live.js";
import { errorLine, jobsTable } from "./common.js";

export function deadPage(root) {
  const body = h("div");
  const all = h("button", { type: "button", id: "replay-all", disabled: true }, "Replay all shown");
  let shown = [];

  async function replay(ids) {
    let ok = 0;
    for (const id of ids) {
      try { await api(`/v1/jobs/${id}/retry`, { method: "POST" }); ok++; } catch (err) { toast(`${id.slice(0, 8)}: ${err.message}`); }
    }
    toast(`Replayed ${ok} job${ok === 1 ? "" : "s"}`);
    load();
  }

  async function load() {
    try {
      const page = await api(`/v1/jobs${qs({ status: "failed", limit: 50 })}`);
      shown = page.jobs.map((j) => j.job_id);
      all.disabled = !shown.length;
      all.textContent = `Replay all shown (${shown.length})`;
      fill(body, shown.length ? jobsTable(page.jobs, {
        tenants: session.admin,
        extra: (j) => h("span", {}, h("span", { class: "error" }, j.error ? `${j.error.code} ` : ""),
          h("button", { type: "button", class: "secondary replay", onclick: () => replay([j.job_id]) }, "Replay")),
      }) : h("p", { class: "muted" }, "No failed jobs."));
    } catch (err) { fill(body, errorLine(err)); }
  }
  all.addEventListener("click", () => replay(shown));
  root.append(h("h1", {}, "Dead letters"),
    h("p", { class: "muted" }, "Jobs that failed for good. Replaying one runs it again with a fresh attempt budget."),
    h("div", { class: "actions" }, all), body);
  load();
  let pending = null;
  const stop = follow({ query: qs({ status: "failed" }), refresh: load,
    onEvent: () => { clearTimeout(pending); pending = setTimeout(load, 1000); } });
  return () => { stop(); clearTimeout(pending); };
}
