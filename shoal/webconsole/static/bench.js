// Bench: `shoal bench` results (its results.json) as its tables and plots: one the server knows (results.json
// under its bench folders) or a file the user opens here (read in the browser, never uploaded).
import { h, clear, num, clock } from "./dom.js";
import { api } from "./api.js";
import { Chart } from "./charts.js";

const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777"];
const msText = (s) => (s === null || s === undefined ? "-" : `${Math.round(s * 1000)}`);

function loadValue(load) {
  const value = parseFloat(String(load).split("=")[1]);
  return Number.isFinite(value) ? value : null;
}

// The seed's table, as `shoal bench` prints it (shoal/bench/report.py).
function pointsTable(points) {
  const cols = ["config", "load", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "success", "TTFT p50 ms", "ITL ms",
                "tok/s", "goodput/s", "errors", "copies"];
  return h("table", { dataset: { benchTable: "points" } },
    h("thead", {}, h("tr", {}, cols.map((c, i) => h("th", { class: i > 1 && i < 12 ? "num" : "" }, c)))),
    h("tbody", {}, points.map((p) => h("tr", {},
      h("td", {}, p.config), h("td", { class: "mono" }, p.load), h("td", { class: "num" }, String(p.requests)),
      h("td", { class: "num" }, num(p.req_per_s, 2)), h("td", { class: "num" }, msText(p.latency_p50_s)),
      h("td", { class: "num" }, msText(p.latency_p90_s)), h("td", { class: "num" }, msText(p.latency_p99_s)),
      h("td", { class: "num" }, `${(p.success_pct ?? 0).toFixed(1)}%`), h("td", { class: "num" }, msText(p.ttft_p50_s)),
      h("td", { class: "num" }, msText(p.itl_mean_s)), h("td", { class: "num" }, (p.output_tokens_per_s ?? 0).toFixed(1)),
      h("td", { class: "num" }, p.goodput_req_per_s === null || p.goodput_req_per_s === undefined ? "-" : p.goodput_req_per_s.toFixed(2)),
      h("td", {}, Object.entries(p.errors || {}).map(([k, v]) => `${k}:${v}`).join(", ") || "-"),
      h("td", { class: "small" }, Object.values(p.copy_share || {}).map((s) => `${Math.round(s * 100)}%`).join(" ") || "-")))));
}

function scheduleTable(points) {
  const cols = ["config", "requests", "failed", "p50 ms", "p90 ms", "copy-seconds", "mean copies", "peak copies", "cold starts",
                "first cold start ms"];
  return h("table", { dataset: { benchTable: "schedule" } },
    h("thead", {}, h("tr", {}, cols.map((c, i) => h("th", { class: i ? "num" : "" }, c)))),
    h("tbody", {}, points.map((p) => h("tr", {},
      h("td", {}, p.config), h("td", { class: "num" }, String(p.requests)),
      h("td", { class: "num" }, String(Object.values(p.errors || {}).reduce((a, b) => a + b, 0) + (p.interrupted || 0))),
      h("td", { class: "num" }, msText(p.latency_p50_s)), h("td", { class: "num" }, msText(p.latency_p90_s)),
      h("td", { class: "num" }, p.copy_seconds === null || p.copy_seconds === undefined ? "-" : Math.round(p.copy_seconds)),
      h("td", { class: "num" }, p.mean_copies === null || p.mean_copies === undefined ? "-" : p.mean_copies.toFixed(2)),
      h("td", { class: "num" }, String(p.peak_copies || "-")), h("td", { class: "num" }, String(p.cold_starts || 0)),
      h("td", { class: "num" }, msText(p.cold_start_s))))));
}

function configs(points) {
  const out = new Map();
  for (const p of points) {
    if (!out.has(p.config)) out.set(p.config, []);
    out.get(p.config).push(p);
  }
  return out;
}

// Throughput, median latency and tokens/s against load, one line per configuration (as report.plot).
function loadPlots(points, into) {
  const byConfig = configs(points);
  const xs = [...new Set(points.map((p) => loadValue(p.load)).filter((x) => x !== null))].sort((a, b) => a - b);
  const xLabel = String(points[0].load).split("=")[0];
  const defs = [["throughput", "Throughput (requests / s)", (p) => p.req_per_s, "rate"],
                ["latency", "Median latency", (p) => p.latency_p50_s, "seconds"],
                ["tokens", "Output tokens / s", (p) => p.output_tokens_per_s, "rate"]];
  for (const [id, title, value, unit] of defs) {
    const names = [...byConfig.keys()];
    const chart = new Chart({ id: `bench:${id}`, title, unit, time: false, xLabel, logX: xs.length > 1 && xs[0] > 0,
      series: names.map((n, i) => ({ label: n, color: PALETTE[i % PALETTE.length], points: true, spanGaps: true })) }).mount(into);
    chart.set(xs, names.map((n) => xs.map((x) => {
      const p = byConfig.get(n).find((q) => loadValue(q.load) === x);
      return p ? value(p) ?? null : null;
    })));
  }
}

// Load, latency and copies against time for runs with a load schedule (as report.plot_timelines).
function timelinePlots(points, into) {
  const ts = [...new Set(points.flatMap((p) => p.timeline.map((r) => r.t)))].sort((a, b) => a - b);
  const at = (p, key) => ts.map((t) => { const r = p.timeline.find((x) => x.t === t); return r && r[key] !== undefined ? r[key] : null; });
  const load = new Chart({ id: "bench:timeline-load", title: "Load asked for and requests in flight", unit: "count", time: false, xLabel: "seconds",
    series: [{ label: "load asked for", color: "#111827", width: 2 },
             ...points.map((p, i) => ({ label: `${p.config}: in flight`, color: PALETTE[i % PALETTE.length] }))] }).mount(into);
  load.set(ts, [at(points[0], "load"), ...points.map((p) => at(p, "in_flight"))]);
  const latency = new Chart({ id: "bench:timeline-latency", title: "Median latency of requests started", unit: "seconds", time: false,
    xLabel: "seconds", series: points.map((p, i) => ({ label: p.config, color: PALETTE[i % PALETTE.length] })) }).mount(into);
  latency.set(ts, points.map((p) => at(p, "latency_p50_s")));
  const copies = new Chart({ id: "bench:timeline-copies", title: "Copies desired (solid) and in service (dashed)", unit: "count",
    time: false, xLabel: "seconds", series: points.flatMap((p, i) => [
      { label: `${p.config}: desired`, color: PALETTE[i % PALETTE.length], step: true },
      { label: `${p.config}: in service`, color: PALETTE[i % PALETTE.length], step: true, dash: [4, 3] }]) }).mount(into);
  copies.set(ts, points.flatMap((p) => [at(p, "desired"), at(p, "current")]));
}

export function renderResult(el, data, label) {
  if (!data || typeof data !== "object" || !Array.isArray(data.points)) {
    clear(el, h("p", { class: "error", dataset: { error: "" } }, `${label}: not a shoal bench result (a JSON object with "points")`));
    return;
  }
  const meta = data.meta || {};
  const target = meta.target || {};
  const plain = data.points.filter((p) => !(p.timeline && p.timeline.length));
  const timed = data.points.filter((p) => p.timeline && p.timeline.length);
  const plots = h("div", { class: "charts" });
  clear(el,
    h("div", { class: "card" }, h("h2", {}, label),
      h("p", { class: "muted" }, [
        target.url ? `target ${target.kind || ""} ${target.url}` : null,
        meta.model ? `model ${meta.model}` : null,
        meta.duration_s ? `${meta.duration_s} s per point` : null,
        meta.prompt_tokens ? `${meta.prompt_tokens} prompt tokens` : null,
        meta.max_new_tokens ? `${meta.max_new_tokens} new tokens` : null,
        (meta.configs || []).length ? `configurations: ${meta.configs.map((c) => c.name).join(", ")}` : null,
      ].filter(Boolean).join(" · ")),
      h("div", { class: "scroll" }, pointsTable(data.points)),
      timed.length ? [h("h3", { style: "margin-top: 12px" }, "Copies over the schedule"), h("div", { class: "scroll" }, scheduleTable(timed))] : null),
    plots);
  if (plain.length) loadPlots(plain, plots);
  if (timed.length) timelinePlots(timed, plots);
}

export class BenchView {
  constructor(el) {
    this.el = el;
    this.list = h("div", { class: "bench-list" });
    this.result = h("div", { dataset: { benchResult: "" } }, h("p", { class: "muted" }, "Pick a result, or open a results.json."));
    const file = h("input", { type: "file", accept: ".json,application/json", dataset: { benchFile: "" } });
    file.addEventListener("change", () => this.openFile(file.files[0]));
    el.append(h("div", { class: "bench-layout" },
      h("div", { class: "card" }, h("h3", {}, "shoal bench results"),
        h("p", { class: "small muted" }, "Open a results.json that ", h("code", {}, "shoal bench"), " wrote (it stays in this browser):"),
        file, h("h3", { style: "margin-top: 14px" }, "On the server"), this.list),
      this.result));
    this.loaded = false;
  }

  async refresh() {
    try {
      const listing = await api.benchList();
      clear(this.list, listing.results.length ? listing.results.map((r) => h("button", {
        dataset: { benchId: r.id }, onclick: (e) => this.openServer(r, e.currentTarget),
      }, r.label, h("div", { class: "small muted" }, clock(r.modified)))) :
        h("p", { class: "small muted" }, `None under ${listing.folders.join(", ")}.`));
    } catch (exc) {
      clear(this.list, h("p", { class: "error" }, exc.message));
    }
  }

  show() {
    if (!this.loaded) {
      this.loaded = true;
      this.refresh();
    }
  }

  async openServer(result, button) {
    for (const b of this.list.querySelectorAll("button")) b.classList.toggle("active", b === button);
    try {
      renderResult(this.result, await api.bench(result.id), result.label);
    } catch (exc) {
      clear(this.result, h("p", { class: "error", dataset: { error: "" } }, exc.message));
    }
  }

  openFile(file) {
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => {
      let data = null;
      try {
        data = JSON.parse(reader.result);
      } catch (exc) {
        clear(this.result, h("p", { class: "error", dataset: { error: "" } }, `${file.name}: not JSON (${exc.message})`));
        return;
      }
      renderResult(this.result, data, file.name);
    };
    reader.readAsText(file);
  }
}
