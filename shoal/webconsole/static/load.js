// Load: live charts of one component (gateway figures, and its copies' engine figures added up) and of each of
// its copies side by side, from the server's load history (a sample every 2 s; rates and percentiles over the
// last 10 s). The table under them sorts the copies busiest first.
import { h, clear, num, ms, pct, color } from "./dom.js";
import { Chart, ChartGroup } from "./charts.js";
import { componentIndex, busiest } from "./overview.js";

const COMPONENT_CHARTS = [
  { id: "requests", title: "Requests / s", unit: "rate", figures: [["requests_per_s", "requests/s"], ["errors_per_s", "errors/s"]] },
  { id: "in_flight", title: "In flight and queued (gateway)", unit: "count", figures: [["in_flight", "in flight"], ["queued", "queued"]] },
  { id: "latency", title: "Latency percentiles (gateway, request to last byte)", unit: "seconds",
    figures: [["latency_p50_s", "p50"], ["latency_p95_s", "p95"], ["latency_p99_s", "p99"]] },
  { id: "ttft", title: "Time to first token (streamed requests)", unit: "seconds", figures: [["ttft_p50_s", "p50"], ["ttft_p95_s", "p95"]] },
  { id: "tokens", title: "Generated tokens / s (its copies)", unit: "rate", figures: [["tokens_per_s", "tokens/s"]] },
  { id: "prefix", title: "Prefix-cache hit rate (its copies)", unit: "share", figures: [["prefix_hit_rate", "prompt tokens from cache"]],
    note: "share of prompt tokens read from the copies' prefix caches" },
  { id: "copies", title: "Copies", unit: "count", figures: [["desired", "desired", true, "#1d4ed8"],
    ["current", "in service", true, "#15803d"], ["draining", "draining", true, "#7c3aed"]] },
];
const COPY_CHARTS = [
  { id: "requests", title: "Requests / s by copy", unit: "rate", figure: "requests_per_s" },
  { id: "in_flight", title: "In flight by copy", unit: "count", figure: "in_flight" },
  { id: "queue", title: "Waiting in the copy's engine", unit: "count", figure: "queue" },
  { id: "tokens", title: "Generated tokens / s by copy", unit: "rate", figure: "tokens_per_s" },
  { id: "latency", title: "Latency p50 by copy (in the engine)", unit: "seconds", figure: "latency_p50_s" },
  { id: "prefix", title: "Prefix-cache hit rate by copy", unit: "share", figure: "prefix_hit_rate" },
  { id: "cpu", title: "CPU by copy (% of one core)", unit: "percent", figure: "cpu_pct" },
];

export function picker(store, ui, onPick) {
  const comps = store.state.components.filter((c) => !c.base);
  const index = componentIndex(store.state);
  return h("div", { class: "picker" }, h("span", { class: "muted" }, "Component:"),
    comps.map((c) => h("button", {
      class: c.name === ui.selected ? "active" : "", dataset: { pick: c.name }, onclick: () => onPick(c.name),
    }, h("span", { class: "swatch", style: `background: ${color(index.get(c.name))}` }), c.name)));
}

export function copyIds(samples, component) {
  const ids = new Set();
  for (const s of samples) for (const [id, f] of Object.entries(s.copies)) if (f.component === component) ids.add(id);
  return [...ids].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
}

export class LoadView {
  constructor(el) {
    this.el = el;
    this.head = h("div");
    this.compCharts = h("div", { class: "charts" });
    this.copyTable = h("div", { class: "card scroll" });
    this.copyCharts = h("div", { class: "charts" });
    this.compGroup = new ChartGroup(this.compCharts);
    this.copyGroup = new ChartGroup(this.copyCharts);
    el.append(this.head, this.compCharts,
      h("div", { class: "section-title" }, h("h3", {}, "Copies"), h("span", { class: "muted small" }, "busiest first")),
      this.copyTable, this.copyCharts);
  }

  render(store, ui, onPick) {
    const comp = store.state.components.find((c) => c.name === ui.selected);
    clear(this.head, picker(store, ui, onPick));
    if (!comp) {
      this.compGroup.clear();
      this.copyGroup.clear();
      clear(this.copyTable, h("p", { class: "muted" }, "No component to show."));
      return;
    }
    const i = componentIndex(store.state).get(comp.name);
    const samples = store.samples;
    const xs = samples.map((s) => s.t);
    this.compGroup.ensure(comp.name, (parent) => COMPONENT_CHARTS.map((def) => new Chart({
      id: `component:${comp.name}:${def.id}`, title: def.title, unit: def.unit, note: def.note,
      series: def.figures.map(([, label, step, fixed], k) => ({ label, color: fixed || color(i, k), step,
                                                                dash: k && !fixed ? [5, 3] : undefined })),
    }).mount(parent)));
    this.compGroup.charts.forEach((chart, k) => {
      chart.set(xs, COMPONENT_CHARTS[k].figures.map(([figure]) => samples.map((s) => {
        const f = s.components[comp.name];
        return f && f[figure] !== undefined ? f[figure] : null;
      })));
    });

    const ids = copyIds(samples, comp.name);
    this.copyGroup.ensure(`${comp.name}:${ids.join(",")}`, (parent) => COPY_CHARTS.map((def) => new Chart({
      id: `copies:${comp.name}:${def.id}`, title: def.title, unit: def.unit,
      series: ids.map((id, k) => ({ label: id, color: color(i + k, k) })),
    }).mount(parent)));
    this.copyGroup.charts.forEach((chart, k) => {
      chart.set(xs, ids.map((id) => samples.map((s) => {
        const f = s.copies[id];
        return f && f[COPY_CHARTS[k].figure] !== undefined ? f[COPY_CHARTS[k].figure] : null;
      })));
    });

    const last = samples[samples.length - 1];
    const best = busiest({ components: [comp] }, last);
    const rows = comp.copies.map((c) => ({ c, f: (last && last.copies[c.id]) || {} }))
      .sort((a, b) => (b.f.requests_per_s || 0) - (a.f.requests_per_s || 0) || b.c.in_flight - a.c.in_flight);
    clear(this.copyTable, h("table", {},
      h("thead", {}, h("tr", {}, ["copy", "status", "where", "req/s", "in flight", "engine queue", "batch", "tokens/s",
        "p50", "p95", "prefix hits", "CPU"].map((t, k) => h("th", { class: k > 2 ? "num" : "" }, t)))),
      h("tbody", {}, rows.map(({ c, f }) => h("tr", {
        class: best && !best.idle && best.copy.id === c.id ? "busiest" : "", dataset: { copyRow: c.id },
      },
        h("td", {}, h("button", { class: "link", onclick: () => ui.openCopy(c.id) }, c.id)),
        h("td", {}, h("span", { class: `badge ${c.status}` }, c.status)),
        h("td", { class: "small" }, `instance ${c.instance}, cores ${c.cores.join(",")}`),
        h("td", { class: "num" }, num(f.requests_per_s, 2)),
        h("td", { class: "num" }, String(c.in_flight)),
        h("td", { class: "num" }, num(f.queue)),
        h("td", { class: "num" }, num(f.batch)),
        h("td", { class: "num" }, num(f.tokens_per_s)),
        h("td", { class: "num" }, ms(f.latency_p50_s)),
        h("td", { class: "num" }, ms(f.latency_p95_s)),
        h("td", { class: "num" }, pct(f.prefix_hit_rate)),
        h("td", { class: "num" }, f.cpu_pct === null || f.cpu_pct === undefined ? "–" : `${Math.round(f.cpu_pct)} %`))))),
      store.watchedNote ? h("p", { class: "small muted" }, store.watchedNote) : null);
  }

  hide() {
    // charts stay; they are refreshed when the view shows again
  }
}
