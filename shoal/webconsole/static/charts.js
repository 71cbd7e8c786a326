// Charts on uPlot (vendored, see static/README.md): one card per chart, data rebuilt from the samples at each
// refresh. Time charts share a cursor, and may draw markers (scaling activities) across the plot.
import { h, ms, num, pct } from "./dom.js";

const FORMATS = {
  count: (v) => num(v, 2),
  rate: (v) => num(v, 2),
  seconds: (v) => ms(v),
  share: (v) => pct(v),
  percent: (v) => (v === null || v === undefined ? "–" : `${Math.round(v)} %`),
};

function axisValues(unit) {
  const fmt = unit === "seconds" ? (v) => (v < 1 ? `${+(v * 1000).toPrecision(3)}ms` : `${+v.toFixed(2)}s`)
    : unit === "share" ? (v) => `${Math.round(v * 100)}%` : (v) => num(v, 2);
  return (_u, ticks) => ticks.map(fmt);
}

// Vertical lines with a short label at given x values (epoch seconds), drawn over the plot.
function markersPlugin(getMarkers) {
  return {
    hooks: {
      draw: (u) => {
        const markers = getMarkers() || [];
        const { ctx } = u;
        const { top, height, left, width } = u.bbox;
        ctx.save();
        ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
        for (const m of markers) {
          const x = Math.round(u.valToPos(m.t, "x", true));
          if (x < left || x > left + width) continue;
          ctx.strokeStyle = m.color || "#7c3aed";
          ctx.fillStyle = m.color || "#7c3aed";
          ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
          ctx.beginPath();
          ctx.moveTo(x, top);
          ctx.lineTo(x, top + height);
          ctx.stroke();
          if (m.label) ctx.fillText(m.label, x + 3 * devicePixelRatio, top + 11 * devicePixelRatio);
        }
        ctx.restore();
      },
    },
  };
}

function latest(column) {
  for (let i = (column || []).length - 1; i >= 0; i--) if (column[i] !== null && column[i] !== undefined) return column[i];
  return null;
}

export class Chart {
  // series: [{label, color, step, dash, width}]; unit: count | rate | seconds | share | percent
  constructor({ id, title, note, series, unit = "count", time = true, markers = null, height = 170, xLabel = null,
                logX = false, sync = "load" }) {
    this.id = id;
    this.series = series;
    this.unit = unit;
    this.el = h("div", { class: "chart", dataset: { chart: id, points: "0" } },
      h("h4", {}, title), note ? h("div", { class: "note" }, note) : null);
    this.plotEl = h("div", { class: "plot" });
    this.el.append(this.plotEl);
    this.options = {
      width: 400, height,
      cursor: time && sync ? { sync: { key: sync } } : {},
      legend: { live: true },
      scales: {
        x: logX ? { time: false, distr: 3, log: 2 } : { time },
        y: { range: (_u, min, max) => [Math.min(0, min ?? 0), max > 0 ? max * 1.1 : unit === "share" ? 1 : 1] },
      },
      axes: [
        { stroke: "#677185", grid: { stroke: "#eef0f4" }, ...(xLabel ? { label: xLabel } : {}) },
        { stroke: "#677185", grid: { stroke: "#eef0f4" }, values: axisValues(unit), size: 56 },
      ],
      series: [
        time ? {} : { label: xLabel || "x" },
        ...series.map((s) => ({
          label: s.label, stroke: s.color, width: s.width || 1.6, dash: s.dash, spanGaps: s.spanGaps ?? false,
          ...(s.points ? { points: { show: true } } : {}),  // else uPlot's own: dots where data is sparse
          // the value under the cursor; with no cursor on the plot, the latest one
          value: (u, v, si, idx) => (FORMATS[unit] || FORMATS.count)(idx === null || idx === undefined ? latest(u.data[si]) : v),
          ...(s.step ? { paths: uPlot.paths.stepped({ align: 1 }) } : {}),
        })),
      ],
      plugins: markers ? [markersPlugin(markers)] : [],
    };
    this.u = null;
    this.data = [[], ...series.map(() => [])];
  }

  mount(parent) {
    parent.append(this.el);
    this.u = new uPlot({ ...this.options, width: Math.max(300, this.plotEl.clientWidth || 400) }, this.data, this.plotEl);
    this.resize = new ResizeObserver(() => {
      const width = this.plotEl.clientWidth;
      if (width && this.u && Math.abs(width - this.u.width) > 2) this.u.setSize({ width, height: this.u.height });
    });
    this.resize.observe(this.plotEl);
    return this;
  }

  set(xs, columns) {
    this.data = [xs, ...columns];
    const points = columns.reduce((n, col) => n + col.filter((v) => v !== null && v !== undefined).length, 0);
    this.el.dataset.points = String(points);
    if (this.u) this.u.setData(this.data);
  }

  redraw() {
    if (this.u) this.u.redraw(false, false);
  }

  destroy() {
    if (this.resize) this.resize.disconnect();
    if (this.u) this.u.destroy();
    this.el.remove();
  }
}

// A set of charts keyed by what they show: rebuilt only when that changes (a component, its copies).
export class ChartGroup {
  constructor(parent) {
    this.parent = parent;
    this.key = null;
    this.charts = [];
  }
  ensure(key, build) {
    if (key === this.key) return false;
    this.clear();
    this.key = key;
    this.charts = build(this.parent);
    return true;
  }
  clear() {
    for (const c of this.charts) c.destroy();
    this.charts = [];
    this.key = null;
  }
}
