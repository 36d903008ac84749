// Submit: a form for any registered job type, built from its input's JSON schema.
import { api } from "../api.js";
import { fill, h } from "../dom.js";
import { errorLine } from "./common.js";

const SIMPLE = new Set(["string", "integer", "number", "boolean"]);

// The one simple type a property takes (optional fields are `anyOf [T, null]`), or "json".
function kindOf(prop) {
  if (prop.enum) return "enum";
  if (SIMPLE.has(prop.type)) return prop.type;
  const options = (prop.anyOf || []).filter((o) => o.type !== "null");
  if (options.length === 1 && SIMPLE.has(options[0].type) && !options[0].enum) return options[0].type;
  if (options.length === 1 && options[0].enum) return "enum";
  return "json";
}

function control(name, prop, required) {
  const id = `in-${name}`;
  const kind = kindOf(prop);
  const spec = prop.anyOf ? { ...prop, ...prop.anyOf.find((o) => o.type !== "null") } : prop;
  const hint = [prop.description, spec.maxLength ? `at most ${spec.maxLength} characters` : null,
    spec.minimum !== undefined ? `≥ ${spec.minimum}` : null, spec.maximum !== undefined ? `≤ ${spec.maximum}` : null]
    .filter(Boolean).join("; ");
  let input;
  if (kind === "boolean") input = h("input", { id, type: "checkbox", checked: prop.default === true });
  else if (kind === "enum") input = h("select", { id }, required ? null : h("option", { value: "" }, "(default)"), (spec.enum || []).map((v) => h("option", { value: v }, v)));
  else if (kind === "integer" || kind === "number") input = h("input", { id, type: "number", step: kind === "integer" ? 1 : "any", min: spec.minimum, max: spec.maximum, placeholder: prop.default ?? "", required });
  else if (kind === "string" && (spec.maxLength || 0) > 500) input = h("textarea", { id, maxlength: spec.maxLength, placeholder: prop.default ?? "", required });
  else if (kind === "string") input = h("input", { id, type: "text", maxlength: spec.maxLength, placeholder: prop.default ?? "", required });
  else input = h("textarea", { id, placeholder: "JSON", required });
  input.dataset.kind = kind;
  input.dataset.name = name;
  return h("div", { class: "field" }, h("label", { for: id }, `${prop.title || name}${required ? " *" : ""}`), input,
    hint ? h("div", { class: "hint" }, hint) : null, kind === "json" ? h("div", { class: "hint" }, "JSON value") : null);
}

function readInput(fields) {
  const input = {};
  for (const el of fields.querySelectorAll("[data-name]")) {
    const { name, kind } = el.dataset;
    if (kind === "boolean") { input[name] = el.checked; continue; }
    const raw = el.value.trim();
    if (raw === "") continue;
    if (kind === "integer" || kind === "number") input[name] = Number(raw);
    else if (kind === "json") {
      try { input[name] = JSON.parse(raw); } catch (e) { throw new Error(`${name}: not valid JSON`); }
    } else input[name] = raw;
  }
  return input;
}

export function submitPage(root) {
  const msg = h("div", { role: "alert" });
  const fields = h("fieldset", {}, h("legend", {}, "Input"));
  const type = h("select", { id: "job-type", required: true });
  const priority = h("select", { id: "priority" }, h("option", { value: "" }, "(the type's default)"),
    ["high", "medium", "low"].map((p) => h("option", { value: p }, p)));
  let types = [];

  function build() {
    const t = types.find((x) => x.name === type.value);
    if (!t) return;
    const schema = t.input_schema;
    const req = new Set(schema.required || []);
    fill(fields, h("legend", {}, `Input of ${t.name}`), t.description ? h("p", { class: "hint" }, t.description) : null,
      Object.entries(schema.properties || {}).map(([name, prop]) => control(name, prop, req.has(name))));
    priority.options[0].textContent = `(default: ${t.priority})`;
  }

  const form = h("form", { class: "card", onsubmit: async (e) => {
    e.preventDefault();
    fill(msg, );
    try {
      const body = { type: type.value, input: readInput(fields) };
      if (priority.value) body.priority = priority.value;
      const job = await api("/v1/jobs", { method: "POST", body });
      location.hash = `#/jobs/${job.job_id}`;
    } catch (err) { fill(msg, errorLine(err)); }
  } },
  h("div", { class: "field" }, h("label", { for: "job-type" }, "Job type"), type),
  h("div", { class: "field" }, h("label", { for: "priority" }, "Priority"), priority),
  fields, msg, h("div", { class: "actions" }, h("button", { type: "submit", id: "submit" }, "Submit")));
  type.addEventListener("change", build);
  root.append(h("h1", {}, "Submit a job"), form);
  api("/v1/job-types").then((res) => {
    types = res.job_types;
    fill(type, ...types.map((t) => h("option", { value: t.name }, t.name)));
    const wanted = new URLSearchParams(location.hash.split("?")[1] || "").get("type");
    type.value = types.some((t) => t.name === wanted) ? wanted : (types.find((t) => t.name === "startup_report") || types[0]).name;
    build();
  }).catch((err) => fill(msg, errorLine(err)));
}
