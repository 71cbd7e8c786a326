// Scaling: a component's autoscaling policy, and its activities (with their causes) on the same time axis as
// the load the policy tracks and the copies it set.
import { h, clear, num, clock, ago, color } from "./dom.js";
import { Chart, ChartGroup } from "./charts.js";
import { componentIndex } from "./overview.js";
import { picker } from "./load.js";

const STATUS_COLORS = { Successful: "#15803d", Failed: "#b91c1c", InProgress: "#b45309", Overridden: "#6b7280" };

function targets(policy) {
  const out = {};
  for (const t of (policy && policy.tracking) || []) {
    out[t.metric.includes("Concurrent") ? "concurrency" : "invocations"] = t;
  }
  return out;
}

function policyCard(comp, ui) {
  const a = comp.autoscaling;
  const actions = ui.admin ? h("div", { class: "actions" },
    h("button", { dataset: { action: "autoscaling", component: comp.name }, onclick: () => ui.autoscale(comp) },
      a ? "Change the policy…" : "Set a policy…"),
    a ? h("button", { class: "danger", dataset: { action: "remove-policy", component: comp.name },
      onclick: () => ui.removePolicy(comp) }, "Remove the policy") : null) : null;
  if (!a) {
    return h("div", { class: "card", dataset: { policy: comp.name } }, h("h3", {}, `${comp.name}: no autoscaling policy`),
      h("p", { class: "muted" }, `Its copy count stays at ${comp.desired} until someone scales it.`), actions);
  }
  const p = a.policy;
  const t = targets(p);
  const row = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
  const first = p.tracking[0];
  return h("div", { class: "card", dataset: { policy: comp.name } },
    h("h3", {}, `${comp.name}: autoscaling policy`),
    h("div", { class: "policy" },
      h("dl", {},
        row("copies", `${p.min_copies} to ${p.max_copies} (now ${comp.current} in service of ${comp.desired})`),
        t.concurrency ? row("target concurrency", `${num(t.concurrency.target, 2)} (requests in flight + queued, per copy)`) : null,
        t.invocations ? row("target invocations", `${num(t.invocations.target, 2)} per copy per minute`) : null,
        first ? row("cooldowns", `scale-out ${first.scale_out_cooldown_s} s, scale-in ${first.scale_in_cooldown_s} s`) : null,
        row("cold start timeout", `${num(p.cold_start_timeout_s)} s (a request waiting at zero copies)`),
        p.steps.length ? row("step policies", p.steps.map((s) => s.name).join(", ")) : null),
      actions));
}

export class ScalingView {
  constructor(el) {
    this.el = el;
    this.head = h("div");
    this.policy = h("div");
    this.charts = h("div", { class: "charts timeline" });
    this.table = h("div", { class: "card scroll" });
    this.group = new ChartGroup(this.charts);
    this.activities = [];
    el.append(this.head, this.policy, h("div", { class: "section-title" }, h("h3", {}, "Load and copies, with the autoscaler's activities"),
      h("span", { class: "muted small" }, "dashed lines: activities (from → to copies)")), this.charts, this.table);
  }

  markers() {
    return this.activities.map((a) => ({ t: a.started_at, label: `${a.from_copies}→${a.to_copies}`,
                                          color: STATUS_COLORS[a.status] || "#7c3aed" }));
  }

  render(store, ui, onPick) {
    const comp = store.state.components.find((c) => c.name === ui.selected);
    clear(this.head, picker(store, ui, onPick));
    if (!comp) {
      clear(this.policy);
      this.group.clear();
      clear(this.table);
      return;
    }
    clear(this.policy, policyCard(comp, ui));
    this.activities = comp.autoscaling ? comp.autoscaling.activities : [];
    const i = componentIndex(store.state).get(comp.name);
    const t = targets(comp.autoscaling && comp.autoscaling.policy);
    const samples = store.samples;
    const xs = samples.map((s) => s.t);
    const fig = (s, k) => (s.components[comp.name] ? s.components[comp.name][k] : null);
    const perCopy = (s) => {
      const f = s.components[comp.name];
      return f ? (f.in_flight + f.queued) / Math.max(f.desired, 1) : null;
    };
    const defs = [
      { id: "concurrency", title: "Concurrency per copy (in flight + queued, per copy asked for)", unit: "count",
        series: [["per copy", (s) => perCopy(s)], ...(t.concurrency ? [["target", () => t.concurrency.target, true]] : [])] },
      { id: "invocations", title: "Invocations per copy per minute", unit: "rate",
        series: [["per copy", (s) => { const f = s.components[comp.name]; return f && f.requests_per_s !== null
          ? (f.requests_per_s * 60) / Math.max(f.desired, 1) : null; }],
        ...(t.invocations ? [["target", () => t.invocations.target, true]] : [])] },
      { id: "copies", title: "Copies", unit: "count", series: [["desired", (s) => fig(s, "desired"), false, "#1d4ed8"],
        ["in service", (s) => fig(s, "current"), false, "#15803d"], ["draining", (s) => fig(s, "draining"), false, "#7c3aed"]],
        step: true },
    ];
    const key = `${comp.name}:${t.concurrency ? 1 : 0}${t.invocations ? 1 : 0}`;
    this.group.ensure(key, (parent) => defs.map((d) => new Chart({
      id: `scaling:${comp.name}:${d.id}`, title: d.title, unit: d.unit, markers: () => this.markers(), height: 140,
      series: d.series.map(([label, , dashed, fixed], k) => ({ label, color: fixed || (dashed ? "#6b7280" : color(i, k)),
                                                     dash: dashed ? [6, 4] : undefined, step: d.step })),
    }).mount(parent)));
    this.group.charts.forEach((chart, k) => chart.set(xs, defs[k].series.map(([, value]) => samples.map(value))));

    clear(this.table, h("h3", {}, `Activities of ${comp.name}`, h("span", { class: "muted small" }, " (newest first; the latest 20)")),
      this.activities.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["started", "copies", "cause", "status", "outcome"].map((x) => h("th", {}, x)))),
        h("tbody", {}, this.activities.map((a) => h("tr", { dataset: { activity: a.id } },
          h("td", { class: "small" }, `${clock(a.started_at)} (${ago(a.started_at)})`),
          h("td", {}, `${a.from_copies} → ${a.to_copies}`),
          h("td", {}, a.cause),
          h("td", { class: `status-${a.status}` }, a.status),
          h("td", { class: "small" }, a.message || (a.ended_at ? "" : "in progress")))))) :
        h("p", { class: "muted" }, comp.autoscaling ? "No activity yet: the load has stayed within the policy."
          : "Without a policy the autoscaler does not act."));
  }
}
