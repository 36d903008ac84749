// Lanes: each provider quota's limits (configured or learned), last minute's use against
// them, in-flight calls, waiting jobs and pauses, over time.
import { api } from "../api.js";
import { fill, h } from "../dom.js";
import { History, lineChart } from "../chart.js";
import { count, perMinute, plural, seconds } from "../format.js";
import { POLL_MS } from "../live.js";
import { bar, errorLine } from "./common.js";

const history = new History();

function limitCell(lane, field, unit) {
  const v = lane.limits[field];
  const src = lane.sources[field];
  return h("span", {}, perMinute(v, unit), src ? h("span", { class: "muted" }, ` (${src})`) : null);
}

function use(used, limit, unit) {
  return h("div", {}, `${count(used)} ${unit}${limit ? ` of ${count(limit)}` : ""}`,
    limit ? bar(100 * used / limit, { label: `${unit} used of the limit` }) : null);
}

export function lanesPage(root) {
  const body = h("div");
  async function load() {
    try {
      const { lanes } = await api("/v1/limits");
      const sample = {};
      for (const l of lanes) { sample[`${l.lane} req`] = l.usage_1m.requests; sample[`${l.lane} rpm`] = l.limits.rpm || 0; }
      history.push(sample);
      if (!lanes.length) { fill(body, h("p", { class: "muted" }, "No lane has been used yet: lanes appear with their first call.")); return; }
      fill(body, ...lanes.map((l) => {
        const waiting = Object.values(l.waiting).reduce((a, b) => a + b, 0);
        const lim = l.limits;
        return h("section", { class: "card lane", dataset: { lane: l.lane }, "aria-label": l.lane },
          h("h2", {}, l.lane, l.paused_for_s > 0 ? h("span", { class: "status failed" }, ` paused ${seconds(l.paused_for_s)}`) : null),
          h("dl", { class: "grid" },
            h("div", {}, h("dt", {}, "Requests limit"), h("dd", { class: "rpm" }, limitCell(l, "rpm", "req"))),
            h("div", {}, h("dt", {}, "Input tokens limit"), h("dd", {}, limitCell(l, "input_tpm", "tok"))),
            h("div", {}, h("dt", {}, "Output tokens limit"), h("dd", {}, limitCell(l, "output_tpm", "tok"))),
            lim.tpm ? h("div", {}, h("dt", {}, "Tokens limit"), h("dd", {}, limitCell(l, "tpm", "tok"))) : null,
            h("div", {}, h("dt", {}, "Concurrency"), h("dd", {}, lim.concurrency ? plural(lim.concurrency, "call") : "no limit")),
            h("div", {}, h("dt", {}, "Requests, last minute"), h("dd", { class: "used" }, use(l.usage_1m.requests, lim.rpm, "req"))),
            h("div", {}, h("dt", {}, "Input tokens, last minute"), h("dd", {}, use(l.usage_1m.input_tokens, lim.input_tpm || lim.tpm, "tok"))),
            h("div", {}, h("dt", {}, "Output tokens, last minute"), h("dd", {}, use(l.usage_1m.output_tokens, lim.output_tpm || lim.tpm, "tok"))),
            h("div", {}, h("dt", {}, "In flight"), h("dd", {}, plural(l.in_flight, "call"))),
            h("div", {}, h("dt", {}, "Waiting"), h("dd", {}, plural(waiting, "job"), waiting ? h("span", { class: "muted" }, ` (${Object.entries(l.waiting).filter(([, n]) => n).map(([p, n]) => `${p} ${n}`).join(", ")})`) : null)),
            h("div", {}, h("dt", {}, "Rate after 429s"), h("dd", {}, `${Math.round(l.rate_factor * 100)} %`)),
            h("div", {}, h("dt", {}, "Pause"), h("dd", {}, l.paused_for_s > 0 ? seconds(l.paused_for_s) : "none"))),
          lineChart([{ name: "requests, last minute", values: history.series(`${l.lane} req`) },
            { name: "limit (req/min)", values: history.series(`${l.lane} rpm`), dashed: true }],
          { label: `${l.lane}: requests in the last minute against the limit, over time`, since: history.since }));
      }));
    } catch (err) { fill(body, errorLine(err)); }
  }
  root.append(h("h1", {}, "Lanes"), body);
  load();
  const timer = setInterval(load, POLL_MS);
  return () => clearInterval(timer);
}
