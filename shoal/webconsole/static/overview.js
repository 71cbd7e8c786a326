// Overview: the three answers first (where copies run, the busiest copy and why, the autoscaler's last action),
// then each endpoint with its components and its instances drawn as accelerators and cores with the copies on them.
import { h, clear, num, ms, pct, ago, plural, hue, color } from "./dom.js";

const LIVE = new Set(["InService", "Draining"]);

export function componentIndex(state) {
  const index = new Map();
  state.components.forEach((c, i) => index.set(c.name, i));
  return index;
}

// The copy that served the most requests over the last window (then: the most in flight), and why it stands out.
export function busiest(state, sample) {
  let best = null;
  for (const comp of state.components) {
    for (const copy of comp.copies) {
      if (!LIVE.has(copy.status)) continue;
      const f = (sample && sample.copies[copy.id]) || {};
      const score = [f.requests_per_s || 0, copy.in_flight, f.cpu_pct || 0];
      if (!best || score[0] > best.score[0] || (score[0] === best.score[0] && (score[1] > best.score[1]
          || (score[1] === best.score[1] && score[2] > best.score[2])))) {
        best = { copy, comp, figures: f, score };
      }
    }
  }
  if (!best) return null;
  const compRate = sample && sample.components[best.comp.name] ? sample.components[best.comp.name].requests_per_s : null;
  best.share = compRate ? (best.figures.requests_per_s || 0) / compRate : null;
  best.idle = best.score[0] === 0 && best.score[1] === 0;
  return best;
}

export function whyBusiest(b) {
  if (!b) return "no copy in service";
  if (b.idle) return "every copy is idle (no requests over the last window)";
  const f = b.figures;
  const parts = [`${num(f.requests_per_s, 2)} req/s`];
  if (b.share !== null && b.comp.copies.length > 1) parts[0] += ` (${pct(b.share)} of ${b.comp.name}'s)`;
  parts.push(`${b.copy.in_flight} in flight${b.copy.limit ? ` of ${b.copy.limit}` : ""}`);
  if (f.queue) parts.push(`${num(f.queue)} waiting in its engine`);
  if (f.tokens_per_s !== null && f.tokens_per_s !== undefined) parts.push(`${num(f.tokens_per_s)} tokens/s`);
  if (f.cpu_pct !== null && f.cpu_pct !== undefined) {
    parts.push(`CPU ${Math.round(f.cpu_pct)} % of one core (it reserves ${num(b.copy.cpu_share * b.copy.cores.length, 2)})`);
  }
  return parts.join(", ");
}

export function lastActivity(state) {
  let last = null;
  for (const comp of state.components) {
    const a = comp.autoscaling && comp.autoscaling.activities[0];
    if (a && (!last || a.started_at > last.activity.started_at)) last = { comp, activity: a };
  }
  return last;
}

function activityText(a) {
  return `${a.cause} — ${a.status}${a.message ? `: ${a.message}` : ""}`;
}

function copiesText(comp) {
  if (comp.base) return `adapter of ${comp.base}`;
  const extra = [];
  const starting = comp.copies.filter((c) => c.status === "Starting" || c.status === "Restarting").length;
  const failed = comp.copies.filter((c) => c.status === "Failed").length;
  if (starting) extra.push(`${starting} starting`);
  if (comp.draining) extra.push(`${comp.draining} draining`);
  if (failed) extra.push(`${failed} failed`);
  return `${comp.current} / ${comp.desired}${extra.length ? ` (${extra.join(", ")})` : ""}`;
}

function autoscalingText(comp) {
  const a = comp.autoscaling;
  if (!a) return h("span", { class: "muted" }, "off");
  const v = a.view;
  const last = a.activities[0];
  return h("div", {},
    h("div", {}, `${v.min_copies}–${v.max_copies} copies${v.targets.length ? `, ${v.targets.join(", ")}` : ""}`),
    last ? h("div", { class: "small muted", dataset: { lastActivity: comp.name } },
      `last: ${activityText(last)} (${ago(last.started_at)})`) : h("div", { class: "small muted" }, "no activity yet"));
}

function chip(copy, index, ui, best, sample) {
  const f = (sample && sample.copies[copy.id]) || {};
  const sub = copy.status === "InService"
    ? `${copy.in_flight} in flight · ${num(f.requests_per_s ?? 0, 1)}/s`
    : copy.status;
  const classes = ["chip", copy.status];
  if (best && best.copy.id === copy.id && !best.idle) classes.push("busiest");
  if (ui.selectedCopy === copy.id) classes.push("selected");
  const title = `${copy.id} (${copy.component}): ${copy.status}; cores ${copy.cores.join(", ") || "–"}` +
    `${copy.accelerators.length ? `; accelerators ${copy.accelerators.join(", ")}` : ""}; ${copy.memory_mb} MB` +
    `${copy.reason ? `\n${copy.reason}` : ""}`;
  return h("button", {
    class: classes.join(" "), style: `--hue: ${hue(index)}; flex-grow: ${copy.cores.length === 1 ? copy.cpu_share : 1}`,
    title, dataset: { copy: copy.id, status: copy.status }, onclick: () => ui.openCopy(copy.id),
  }, h("span", { class: "id" }, copy.id), h("span", { class: "sub" }, sub));
}

function instanceCard(endpoint, i, copies, index, ui, best, sample) {
  const shape = endpoint.instance;
  const reserved = copies.reduce((n, c) => n + c.memory_mb, 0);
  const accelerators = [];
  for (let a = 0; a < shape.accelerators; a++) {
    accelerators.push(h("div", { class: "cell", dataset: { accelerator: String(a) } },
      h("div", { class: "cell-name" }, `${shape.accelerator_name || "accelerator"} ${a}`),
      h("div", { class: "chips" }, copies.filter((c) => c.accelerators.includes(a))
        .map((c) => chip(c, index.get(c.component), ui, best, sample)))));
  }
  const cores = [];
  for (let k = 0; k < shape.vcpus; k++) {
    cores.push(h("div", { class: "cell", dataset: { core: String(k) } },
      h("div", { class: "cell-name" }, `core ${k}`),
      h("div", { class: "chips" }, copies.filter((c) => c.cores.includes(k))
        .map((c) => chip(c, index.get(c.component), ui, best, sample)))));
  }
  const gib = (mib) => `${(mib / 1024).toFixed(1)} GiB`;
  const cell = shape.vcpus <= 8 ? 190 : shape.vcpus <= 32 ? 130 : 92;  // few cores: room for the copies' names
  return h("div", { class: "instance", style: `--cell: ${cell}px`, dataset: { instance: String(i) } },
    h("h4", {}, `instance ${i}`, h("span", { class: "muted" },
      ` · ${endpoint.instance_type}: ${plural(shape.vcpus, "vCPU")}, ${gib(shape.memory_mib)}` +
      `${shape.accelerators ? `, ${shape.accelerators} × ${shape.accelerator_name}` : ", no accelerators"}`)),
    h("div", { class: "row-label" }, `memory reserved: ${gib(reserved)} of ${gib(shape.memory_mib)}`),
    h("div", { class: "memory" }, copies.map((c) => h("span", {
      title: `${c.id}: ${c.memory_mb} MB`,
      style: `width: ${(100 * c.memory_mb) / shape.memory_mib}%; background: ${color(index.get(c.component))}`,
    }))),
    shape.accelerators ? [h("div", { class: "row-label" }, "accelerators"), h("div", { class: "cells" }, accelerators)] : null,
    h("div", { class: "row-label" }, "CPU cores"),
    h("div", { class: "cells" }, cores));
}

function legend() {
  const item = (status, text) => h("span", {}, h("span", { class: `chip ${status}`, style: "--hue: 212" }), text);
  return h("div", { class: "legend" }, item("InService", "in service"), item("Starting", "starting / restarting"),
    item("Draining", "draining (finishing its requests)"), item("Failed", "failed (click for its reason and log)"),
    h("span", {}, h("span", { class: "chip InService busiest", style: "--hue: 212" }), "busiest copy"),
    h("span", {}, "fractional copies share a core; a copy's width is its share"));
}

export function renderOverview(el, store, ui) {
  const { state } = store;
  const sample = store.samples[store.samples.length - 1];
  const index = componentIndex(state);
  const best = busiest(state, sample);
  const last = lastActivity(state);
  const all = state.components.flatMap((c) => c.copies);
  const count = (s) => all.filter((c) => c.status === s).length;
  const desired = state.components.reduce((n, c) => n + c.desired, 0);

  const facts = h("div", { class: "facts" },
    h("div", { class: "fact" }, h("div", { class: "label" }, "Copies"),
      h("div", { class: "value", dataset: { fact: "copies" } },
        `${count("InService")} in service of ${desired} desired` +
        `${count("Starting") + count("Restarting") ? ` · ${count("Starting") + count("Restarting")} starting` : ""}` +
        `${count("Draining") ? ` · ${count("Draining")} draining` : ""}${count("Failed") ? ` · ${count("Failed")} failed` : ""}`)),
    h("div", { class: "fact" }, h("div", { class: "label" }, "Busiest copy (last 10 s)"),
      h("div", { class: "value", dataset: { fact: "busiest" } },
        best && best.idle ? whyBusiest(best) : best ? [h("button", { class: "link", dataset: { busiest: best.copy.id },
          onclick: () => ui.openCopy(best.copy.id) }, best.copy.id),
          ` of ${best.comp.name} on instance ${best.copy.instance}, core${best.copy.cores.length > 1 ? "s" : ""} ` +
          `${best.copy.cores.join(", ")}: ${whyBusiest(best)}`] : "no copy in service")),
    h("div", { class: "fact" }, h("div", { class: "label" }, "Autoscaler's last action"),
      h("div", { class: "value", dataset: { fact: "last-activity" } },
        last ? `${last.comp.name}, ${ago(last.activity.started_at)}: ${activityText(last.activity)}`
          : state.components.some((c) => c.autoscaling) ? "none yet" : "no component has an autoscaling policy")));

  const endpoints = state.endpoints.map((ep) => {
    const comps = state.components.filter((c) => c.endpoint === ep.name);
    const rows = [];
    for (const comp of comps) {
      const i = index.get(comp.name);
      const f = (sample && sample.components[comp.name]) || {};
      rows.push(h("tr", { dataset: { component: comp.name } },
        h("td", {}, h("span", { class: "swatch", style: `background: ${color(i)}` }), h("strong", {}, comp.name)),
        h("td", { class: "mono" }, comp.model_id),
        h("td", {}, comp.engine),
        h("td", {}, comp.adapters.length ? comp.adapters.join(", ") : h("span", { class: "muted" }, "–")),
        h("td", { dataset: { copies: comp.name } }, copiesText(comp)),
        h("td", {}, h("span", { class: `badge ${comp.status}` }, comp.status)),
        h("td", { class: "small" }, comp.base ? "–" :
          `${num(f.requests_per_s ?? 0, 2)} req/s · ${comp.in_flight} in flight · ${comp.queued} queued` +
          `${f.latency_p50_s !== null && f.latency_p50_s !== undefined ? ` · p50 ${ms(f.latency_p50_s)}` : ""}`),
        h("td", {}, comp.base ? "–" : autoscalingText(comp)),
        h("td", {}, ui.admin ? h("div", { class: "actions" },
          comp.base ? null : h("button", { dataset: { action: "scale", component: comp.name }, onclick: () => ui.scale(comp) }, "Scale…"),
          comp.base ? null : h("button", { dataset: { action: "autoscaling", component: comp.name }, onclick: () => ui.autoscale(comp) }, "Autoscaling…"),
          h("button", { class: "danger", dataset: { action: "delete", component: comp.name }, onclick: () => ui.deleteComponent(comp) }, "Delete")) : null)));
      if (comp.reason) {
        rows.push(h("tr", {}, h("td", { colspan: 9 }, h("div", { class: "reason", dataset: { reason: comp.name } }, comp.reason))));
      }
    }
    const instances = [];
    for (let i = 0; i < ep.instance_count; i++) {
      const copies = comps.flatMap((c) => c.copies).filter((c) => c.instance === i);
      instances.push(instanceCard(ep, i, copies, index, ui, best, sample));
    }
    return h("div", { class: "card", dataset: { endpoint: ep.name } },
      h("div", { class: "endpoint-head" },
        h("h2", {}, `Endpoint ${ep.name}`), h("span", { class: `badge ${ep.status}` }, ep.status),
        h("span", { class: "muted" }, `${ep.instance_type} × ${ep.instance_count} · routing ${ep.routing}`),
        h("span", { class: "spacer" }),
        ui.admin ? h("button", { class: "danger", dataset: { action: "delete-endpoint", endpoint: ep.name },
          onclick: () => ui.deleteEndpoint(ep, comps) }, "Delete endpoint") : null),
      comps.length ? h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Component", "Model", "Engine", "Adapters", "Copies in service / desired", "Status",
          "Load now", "Autoscaling", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows))) : h("p", { class: "muted" }, "No inference component yet."),
      h("h3", { style: "margin-top: 14px" }, "Placement"),
      h("div", { class: "instances" }, instances));
  });

  clear(el, facts,
    state.endpoints.length ? endpoints : h("div", { class: "card" }, h("h2", {}, "Nothing deployed yet"),
      h("p", {}, ui.admin ? "Deploy a model with the Deploy… button (the default is gemma-3-270m), or from the CLI: "
        : "An admin deploys models with ", h("code", {}, "shoal deploy gemma-3-270m"), ".")),
    state.endpoints.length ? legend() : null);
}

// The side panel of one copy: where it runs, what it does now, why it failed, its log's last lines.
export function renderCopyPanel(el, store, ui, log) {
  const copy = store.state.components.flatMap((c) => c.copies).find((c) => c.id === ui.selectedCopy);
  if (!copy) {
    clear(el, h("button", { class: "close", onclick: () => ui.openCopy(null) }, "Close"),
      h("h2", {}, ui.selectedCopy), h("p", { class: "muted" }, "This copy is gone."));
    return;
  }
  const sample = store.samples[store.samples.length - 1];
  const f = (sample && sample.copies[copy.id]) || {};
  const row = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
  clear(el,
    h("button", { class: "close", onclick: () => ui.openCopy(null) }, "Close"),
    h("h2", {}, copy.id, " ", h("span", { class: `badge ${copy.status}` }, copy.status)),
    h("dl", {},
      row("component", copy.component),
      row("instance", String(copy.instance)),
      row("cores", `${copy.cores.join(", ")}${copy.cpu_share < 1 ? ` (${num(copy.cpu_share, 2)} of a core)` : ""}`),
      row("accelerators", copy.accelerators.length ? copy.accelerators.join(", ") : "none"),
      row("memory", `${copy.memory_mb} MB reserved${f.memory_mb ? `, ${Math.round(f.memory_mb)} MB used` : ""}`),
      row("process", copy.pid && copy.status !== "Failed" ? `pid ${copy.pid} at ${copy.address}` : "not running"),
      row("restarts", String(copy.restarts)),
      row("in flight", `${copy.in_flight}${copy.limit ? ` (it takes ${copy.limit} at once)` : ""}`),
      row("requests/s", num(f.requests_per_s, 2)),
      row("tokens/s", num(f.tokens_per_s, 1)),
      row("engine queue / batch", `${num(f.queue)} / ${num(f.batch)}`),
      row("latency p50 / p95", `${ms(f.latency_p50_s)} / ${ms(f.latency_p95_s)}`),
      row("prefix-cache hits", pct(f.prefix_hit_rate)),
      row("CPU", f.cpu_pct === null || f.cpu_pct === undefined ? "–" : `${Math.round(f.cpu_pct)} % of one core`),
      copy.role !== "serving" ? row("role", copy.role === "leaving" ? "scaled in: finishing its requests" : "a rolling update's new copy") : null),
    copy.reason ? [h("h3", {}, "Reason"), h("div", { class: "reason", dataset: { copyReason: copy.id } }, copy.reason)] : null,
    h("h3", {}, "Last lines of its log"),
    log ? h("div", { class: "small muted" }, log.path) : null,
    h("div", { class: "log", dataset: { copyLog: copy.id } }, log ? (log.lines.join("\n") || "(empty)") : "loading…"));
}
