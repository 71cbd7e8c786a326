// Actions, each through shoal's control API (so the validation and the error texts are the API's own): scale,
// deploy, delete, the autoscaling policy. Whatever stops copies asks first.
import { h, clear, plural } from "./dom.js";
import { api } from "./api.js";

const dialog = () => document.getElementById("dialog");

function show(...children) {
  const d = dialog();
  clear(d, ...children);
  if (!d.open) d.showModal();
  return d;
}

export function closeDialog() {
  const d = dialog();
  if (d.open) d.close();
}

function errorLine() {
  return h("p", { class: "error", dataset: { error: "" }, hidden: true });
}

function fail(el, exc) {
  el.textContent = exc && exc.message ? exc.message : String(exc);
  el.hidden = false;
}

// A form in the dialog; `submit` gets the form's values and may throw (its message is shown, the form stays).
function form({ title, intro, fields, submitLabel, danger = false, submit }) {
  const error = errorLine();
  const button = h("button", { class: `primary${danger ? " danger" : ""}`, type: "submit", dataset: { submit: "" } }, submitLabel);
  const el = h("form", {
    novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      error.hidden = true;
      button.disabled = true;
      try {
        await submit(values(el));
      } catch (exc) {
        if (!dialog().open) show(el);
        fail(error, exc);
      } finally {
        button.disabled = false;
      }
    },
  }, h("h2", {}, title), intro ? h("p", { class: "muted" }, intro) : null, fields, error,
  h("div", { class: "buttons" }, h("button", { type: "button", onclick: closeDialog }, "Cancel"), button));
  show(el);
  const first = el.querySelector("input, select, textarea");
  if (first) first.focus();
  return el;
}

function values(el) {
  const out = {};
  for (const field of el.querySelectorAll("[name]")) out[field.name] = field.value;
  return out;
}

// Ask before stopping copies; resolves true to go on. Its error line shows what the API said if it then fails.
function confirmStop({ title, text, yes }) {
  return new Promise((resolve) => {
    const error = errorLine();
    show(h("div", { dataset: { confirm: "" } }, h("h2", {}, title), h("p", { dataset: { confirmText: "" } }, text), error,
      h("div", { class: "buttons" },
        h("button", { type: "button", onclick: () => { closeDialog(); resolve(null); } }, "Cancel"),
        h("button", { type: "button", class: "primary danger", dataset: { confirmYes: "" },
          onclick: () => resolve(error) }, yes))));
  });
}

// Run `action` after an optional confirmation; close on success, else show the API's words where the user is.
async function perform(action, refresh, confirmation) {
  let where = null;
  if (confirmation) {
    where = await confirmStop(confirmation);
    if (where === null) return;
  }
  try {
    await action();
    closeDialog();
    refresh();
  } catch (exc) {
    if (where) fail(where, exc);
    else throw exc;
  }
}

const field = (label, input, wide = false) => h("label", { class: wide ? "wide" : "" }, label, input);
const input = (name, value, type = "text", extra = {}) =>
  h("input", { name, value: value === undefined || value === null ? "" : String(value), type, ...extra });
const select = (name, options, value) => h("select", { name }, options.map(([v, text]) =>
  h("option", { value: v, selected: v === value }, text)));

// What the user typed, as the API reads it: nothing -> left out (the API's default); a number -> a number;
// anything else as it is (the API says what is wrong with it).
function numeric(text) {
  const t = (text || "").trim();
  if (t === "") return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : t;
}

function environment(text) {
  const env = {};
  for (const raw of (text || "").split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const at = line.indexOf("=");
    if (at < 0) env[line] = "";
    else env[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  return env;
}

function defined(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

export function scale(comp, refresh) {
  const auto = comp.autoscaling ? comp.autoscaling.view : null;
  form({
    title: `Scale ${comp.name}`,
    intro: `${comp.current} of ${comp.desired} copies in service now.` +
      (auto ? ` Its autoscaling policy keeps it between ${auto.min_copies} and ${auto.max_copies} copies and may change it again.` : ""),
    fields: h("div", { class: "fields" }, field("copies", input("CopyCount", comp.desired, "number", { min: 0, step: 1 }))),
    submitLabel: "Scale",
    submit: async ({ CopyCount }) => {
      const copies = numeric(CopyCount);
      const stops = typeof copies === "number" ? comp.desired - copies : 0;
      await perform(() => api.scale(comp.name, copies === undefined ? null : copies), refresh, stops > 0 ? {
        title: `Stop ${plural(stops, "copy", "copies")} of ${comp.name}?`,
        text: `Scaling ${comp.name} from ${comp.desired} to ${copies} copies stops ${plural(stops, "copy", "copies")}: ` +
          "each leaves routing first and finishes its requests in flight (drains), then stops.",
        yes: `Stop ${plural(stops, "copy", "copies")}`,
      } : null);
    },
  });
}

export function deleteComponent(comp, refresh) {
  const live = comp.copies.length;
  perform(() => api.deleteComponent(comp.name), refresh, {
    title: `Delete ${comp.name}?`,
    text: comp.base ? `${comp.name} is an adapter of ${comp.base}: its base's copies stop serving it.`
      : `Its ${plural(live, "copy", "copies")} drain (requests in flight finish) and stop; its autoscaling policy goes with it.`,
    yes: `Delete ${comp.name}`,
  }).catch((exc) => show(h("h2", {}, `Cannot delete ${comp.name}`), h("p", { class: "error", dataset: { error: "" } }, exc.message),
    h("div", { class: "buttons" }, h("button", { onclick: closeDialog }, "Close"))));
}

export function deleteEndpoint(ep, comps, refresh) {
  const copies = comps.reduce((n, c) => n + c.copies.length, 0);
  perform(() => api.deleteEndpoint(ep.name, comps.length > 0), refresh, {
    title: `Delete endpoint ${ep.name}?`,
    text: comps.length ? `This also deletes ${plural(comps.length, "inference component")} (${comps.map((c) => c.name).join(", ")}): ` +
      `${plural(copies, "copy", "copies")} drain and stop.` : "It has no inference component.",
    yes: `Delete ${ep.name}`,
  }).catch((exc) => show(h("h2", {}, `Cannot delete ${ep.name}`), h("p", { class: "error", dataset: { error: "" } }, exc.message),
    h("div", { class: "buttons" }, h("button", { onclick: closeDialog }, "Close"))));
}

export function autoscale(comp, refresh) {
  const policy = comp.autoscaling ? comp.autoscaling.policy : null;
  const tracking = (kind) => (policy ? policy.tracking.find((t) => t.metric.includes(kind)) : null);
  const conc = tracking("Concurrent"), inv = tracking("Invocations");
  const first = policy && policy.tracking[0];
  form({
    title: `Autoscaling of ${comp.name}`,
    intro: "Target tracking: copies are added when the load per copy goes over a target and drained when it stays " +
      "under it for the scale-in cooldown; minimum 0 lets an idle component go to zero copies (a request then waits for one).",
    fields: h("div", { class: "fields" },
      field("minimum copies", input("MinCapacity", policy ? policy.min_copies : Math.min(1, comp.desired), "number")),
      field("maximum copies", input("MaxCapacity", policy ? policy.max_copies : Math.max(2, comp.desired), "number")),
      field("target concurrency per copy (in flight + queued)", input("TargetConcurrency", conc ? conc.target : (policy ? "" : 4), "number", { step: "any" })),
      field("target invocations per copy per minute", input("TargetInvocationsPerCopyPerMinute", inv ? inv.target : "", "number", { step: "any" })),
      field("scale-out cooldown (s)", input("ScaleOutCooldown", first ? first.scale_out_cooldown_s : 300, "number")),
      field("scale-in cooldown (s)", input("ScaleInCooldown", first ? first.scale_in_cooldown_s : 300, "number")),
      field("cold start timeout (s)", input("ColdStartTimeout", policy ? policy.cold_start_timeout_s : 300, "number", { step: "any" }))),
    submitLabel: policy ? "Change the policy" : "Set the policy",
    submit: async (v) => {
      const spec = defined(Object.fromEntries(Object.entries(v).map(([k, x]) => [k, numeric(x)])));
      const stops = typeof spec.MaxCapacity === "number" ? comp.desired - spec.MaxCapacity : 0;
      await perform(() => api.putAutoscaling(comp.name, spec), refresh, stops > 0 ? {
        title: `Stop ${plural(stops, "copy", "copies")} of ${comp.name}?`,
        text: `The new maximum (${spec.MaxCapacity}) is below the ${comp.desired} copies ${comp.name} has: the autoscaler ` +
          `drains and stops ${plural(stops, "copy", "copies")}.`,
        yes: "Set the policy",
      } : null);
    },
  });
}

export function removePolicy(comp, refresh) {
  api.deleteAutoscaling(comp.name).then(refresh).catch((exc) => show(h("h2", {}, "Cannot remove the policy"),
    h("p", { class: "error", dataset: { error: "" } }, exc.message), h("div", { class: "buttons" }, h("button", { onclick: closeDialog }, "Close"))));
}

export function deploy(state, refresh) {
  const choices = state.choices;
  const endpoints = state.endpoints.map((e) => [e.name, `${e.name} (${e.instance_type} × ${e.instance_count})`]);
  const NEW = "\u0000new";
  const endpointPick = select("endpoint", [...endpoints, [NEW, "a new endpoint…"]], endpoints.length ? endpoints[0][0] : NEW);
  const newEndpoint = h("fieldset", { dataset: { newEndpoint: "" } }, h("legend", {}, "new endpoint"),
    h("div", { class: "fields" },
      field("endpoint name", input("EndpointName", "", "text", { placeholder: "demo" })),
      field("instance type", select("InstanceType", choices.instance_types.map((t) => [t, t]), "local")),
      field("instances", input("InitialInstanceCount", 1, "number")),
      field("routing strategy", select("RoutingStrategy", choices.routing.map((r) => [r, r]), choices.default_routing))));
  const sync = () => { newEndpoint.hidden = endpointPick.value !== NEW; };
  endpointPick.addEventListener("change", sync);
  const bases = state.components.filter((c) => !c.base).map((c) => [c.name, c.name]);
  const el = form({
    title: "Deploy an inference component",
    intro: "Copies are placed on the endpoint's instances at once; what does not fit, or a model or setting the engine " +
      "cannot use, is refused with the API's own words.",
    fields: h("div", { class: "fields" },
      field("endpoint", endpointPick, true), newEndpoint,
      field("component name", input("InferenceComponentName", "", "text", { placeholder: "gemma" })),
      field("model", input("ModelId", choices.default_model)),
      field("engine", select("Engine", choices.engines.map((e) => [e, e]), choices.default_engine)),
      field("copies", input("CopyCount", 1, "number")),
      field("CPU cores per copy", input("NumberOfCpuCoresRequired", 1, "number", { step: "any" })),
      field("accelerators per copy", input("NumberOfAcceleratorDevicesRequired", 0, "number")),
      field("memory per copy (MB)", input("MinMemoryRequiredInMb", 1024, "number")),
      field("memory limit (MB, optional)", input("MaxMemoryRequiredInMb", "", "number")),
      field("startup timeout (s)", input("ContainerStartupHealthCheckTimeoutInSeconds", "", "number", { placeholder: "600" })),
      field("adapter of (LoRA; optional)", select("BaseInferenceComponentName", [["", "– (a model with copies)"], ...bases], "")),
      field("environment (KEY=VALUE per line: MAX_TOTAL_TOKENS, MAX_BATCH_TOTAL_TOKENS, ...)",
        h("textarea", { name: "Environment", spellcheck: "false", placeholder: "MAX_TOTAL_TOKENS=2048" }), true)),
    submitLabel: "Deploy",
    submit: async (v) => {
      const creating = v.endpoint === NEW;
      const endpoint = creating ? v.EndpointName : v.endpoint;
      const adapter = v.BaseInferenceComponentName || undefined;
      const spec = defined({
        InferenceComponentName: v.InferenceComponentName, EndpointName: endpoint, ModelId: v.ModelId, Engine: v.Engine,
        CopyCount: adapter ? undefined : numeric(v.CopyCount),
        ComputeResourceRequirements: adapter ? undefined : defined({
          NumberOfCpuCoresRequired: numeric(v.NumberOfCpuCoresRequired),
          NumberOfAcceleratorDevicesRequired: numeric(v.NumberOfAcceleratorDevicesRequired),
          MinMemoryRequiredInMb: numeric(v.MinMemoryRequiredInMb), MaxMemoryRequiredInMb: numeric(v.MaxMemoryRequiredInMb),
        }),
        ContainerStartupHealthCheckTimeoutInSeconds: numeric(v.ContainerStartupHealthCheckTimeoutInSeconds),
        Environment: environment(v.Environment), BaseInferenceComponentName: adapter,
      });
      if (creating) {
        await api.createEndpoint(defined({ EndpointName: endpoint, InstanceType: v.InstanceType,
          InitialInstanceCount: numeric(v.InitialInstanceCount), RoutingStrategy: v.RoutingStrategy }));
      }
      try {
        await api.deploy(spec);
      } catch (exc) {
        if (creating) await api.deleteEndpoint(endpoint, false).catch(() => null);  // nothing half-made stays
        throw exc;
      }
      closeDialog();
      refresh();
    },
  });
  sync();
  return el;
}
