// Queues: ready and unacked per priority, workers with active and reserved counts, over time.
import { api } from "../api.js";
import { fill, h } from "../dom.js";
import { History, lineChart } from "../chart.js";
import { count, localClock, plural } from "../format.js";
import { POLL_MS } from "../live.js";
import { errorLine } from "./common.js";

const history = new History(); // kept across visits of the page, for the chart

export function queuesPage(root) {
  const body = h("div");
  async function load() {
    try {
      const q = await api("/v1/queues");
      const sample = {};
      for (const x of q.queues) { sample[`${x.name} ready`] = x.ready ?? 0; sample[`${x.name} unacked`] = x.unacked ?? 0; }
      sample["active"] = q.workers.reduce((n, w) => n + w.active, 0);
      sample["reserved"] = q.workers.reduce((n, w) => n + w.reserved, 0);
      history.push(sample);
      const names = q.queues.map((x) => x.name);
      fill(body, 
        h("p", { class: "muted" }, `Broker ${q.broker} · as of ${localClock(q.cached_at)}`),
        h("div", { class: "scroll" }, h("table", { class: "queues" },
          h("thead", {}, h("tr", {}, h("th", {}, "Queue"), h("th", { class: "num" }, "Ready (messages)"), h("th", { class: "num" }, "Unacked (messages)"))),
          h("tbody", {}, q.queues.map((x) => h("tr", { dataset: { queue: x.name } }, h("td", {}, x.name), h("td", { class: "num" }, count(x.ready)), h("td", { class: "num" }, count(x.unacked))))))),
        lineChart(names.map((n) => ({ name: `${n} ready`, values: history.series(`${n} ready`) }))
          .concat(names.map((n) => ({ name: `${n} unacked`, values: history.series(`${n} unacked`), dashed: true }))),
        { label: "Messages per queue over time (sampled every 3 s)", since: history.since }),
        h("h2", {}, `Workers (${q.workers.length})`),
        q.workers.length ? h("div", { class: "scroll" }, h("table", { class: "workers" },
          h("thead", {}, h("tr", {}, h("th", {}, "Worker"), h("th", { class: "num" }, "Active (jobs)"), h("th", { class: "num" }, "Reserved (jobs)"), h("th", { class: "hide-sm" }, "Queues"))),
          h("tbody", {}, q.workers.map((w) => h("tr", {}, h("td", {}, w.name), h("td", { class: "num" }, count(w.active)), h("td", { class: "num" }, count(w.reserved)), h("td", { class: "hide-sm" }, w.queues.join(", "))))))) : h("p", { class: "muted" }, "No worker answered."),
        lineChart([{ name: "active", values: history.series("active") }, { name: "reserved", values: history.series("reserved"), dashed: true }],
          { label: "Jobs held by workers over time", since: history.since }),
        h("h2", {}, "Jobs by status"),
        h("dl", { class: "card grid" }, Object.entries(q.jobs_by_status).map(([s, n]) => h("div", {}, h("dt", {}, s), h("dd", {}, plural(n, "job"))))));
    } catch (err) { fill(body, errorLine(err)); }
  }
  root.append(h("h1", {}, "Queues"), body);
  load();
  const timer = setInterval(load, POLL_MS);
  return () => clearInterval(timer);
}
