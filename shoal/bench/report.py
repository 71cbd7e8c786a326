"""Benchmark output: the seed's table in the terminal, JSON, CSV and PNG plots."""
from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path

from rich.table import Table

from shoal.bench.stats import PointStats
from shoal.console import table_console


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def table(points: list[PointStats]) -> Table:
    t = Table(title="shoal bench")
    for col in ("config", "load", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "success", "TTFT p50 ms",
                "ITL ms", "tok/s", "goodput/s", "errors", "copies"):
        t.add_column(col, justify="left" if col in ("config", "errors", "copies") else "right")
    for p in points:
        errors = ", ".join(f"{k}:{v}" for k, v in p.errors.items()) or "-"
        copies = " ".join(f"{share:.0%}" for share in p.copy_share.values()) or "-"
        goodput = "-" if p.goodput_req_per_s is None else f"{p.goodput_req_per_s:.2f}"
        t.add_row(p.config, p.load, str(p.requests), f"{p.req_per_s:.2f}", _ms(p.latency_p50_s), _ms(p.latency_p90_s),
                  _ms(p.latency_p99_s), f"{p.success_pct:.1f}%", _ms(p.ttft_p50_s), _ms(p.itl_mean_s),
                  f"{p.output_tokens_per_s:.1f}", goodput, errors, copies)
    return t


def schedule_table(points: list[PointStats]) -> Table:
    """Runs against a load schedule: latency, failures, and what the copies cost."""
    t = Table(title="copies over the schedule")
    for col in ("config", "requests", "failed", "p50 ms", "p90 ms", "copy-seconds", "mean copies", "peak copies",
                "cold starts", "first cold start ms"):
        t.add_column(col, justify="left" if col == "config" else "right")
    for p in points:
        failed = sum(p.errors.values()) + p.interrupted
        t.add_row(p.config, str(p.requests), str(failed), _ms(p.latency_p50_s), _ms(p.latency_p90_s),
                  "-" if p.copy_seconds is None else f"{p.copy_seconds:.0f}",
                  "-" if p.mean_copies is None else f"{p.mean_copies:.2f}", str(p.peak_copies or "-"),
                  str(p.cold_starts), _ms(p.cold_start_s))
    return t


def write(points: list[PointStats], out: Path, meta: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows = [p.row() for p in points]
    (out / "results.json").write_text(json.dumps({"meta": meta, "points": rows}, indent=2))
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "timeline"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items() if k != "timeline"})
    written = [out / "results.json", out / "results.csv"]
    for p in points:
        if p.timeline:
            path = out / f"timeline-{_slug(p.config)}.csv"
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(p.timeline[0]))
                writer.writeheader()
                writer.writerows(p.timeline)
            written.append(path)
    return [*written, *plot([p for p in points if not p.timeline], out),
            *plot_timelines([p for p in points if p.timeline], out)]


def _slug(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-")[:40] or "config"


def plot_timelines(points: list[PointStats], out: Path) -> list[Path]:
    """Load, latency and copies against time, one line per configuration, on one time axis."""
    if not points:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (load, latency, copies) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    ts = [row["t"] for row in points[0].timeline]
    load.plot(ts, [row["load"] for row in points[0].timeline], color="black", label="load asked for")
    nan = float("nan")
    for i, p in enumerate(points):
        color = f"C{i}"
        xs = [row["t"] for row in p.timeline]
        load.plot(xs, [row["in_flight"] for row in p.timeline], color=color, alpha=0.7, label=f"{p.config}: in flight")
        latency.plot(xs, [nan if row["latency_p50_s"] is None else row["latency_p50_s"] for row in p.timeline],
                     color=color, marker=".", markersize=3, alpha=0.8, label=p.config)  # gaps: nothing started
        offset = 0.04 * (i - (len(points) - 1) / 2)  # lines of equal counts stay visible side by side
        copies.step(xs, [nan if row["desired"] is None else row["desired"] + offset for row in p.timeline],
                    where="post", color=color, label=f"{p.config}: desired")
        copies.step(xs, [nan if row["current"] is None else row["current"] + offset for row in p.timeline],
                    where="post", color=color, linestyle=":", label=f"{p.config}: in service")
    load.set_ylabel(points[0].load.split("~")[0] + " / in flight")
    latency.set_ylabel("median latency (s)\nof requests started")
    copies.set_ylabel("copies")
    copies.set_xlabel("seconds")
    for ax in (load, latency, copies):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = out / "timeline.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def plot(points: list[PointStats], out: Path) -> list[Path]:
    """Throughput and median latency against load, one line per configuration."""
    if not points:
        return []
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_config: dict[str, list[PointStats]] = defaultdict(list)
    for p in points:
        by_config[p.config].append(p)
    written = []
    for name, value, label in (("throughput", lambda p: p.req_per_s, "requests / s"),
                               ("latency", lambda p: (p.latency_p50_s or 0) * 1000, "median latency (ms)"),
                               ("tokens", lambda p: p.output_tokens_per_s, "output tokens / s")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for config, series in by_config.items():
            xs = [_load_value(p.load) for p in series]
            ax.plot(xs, [value(p) for p in series], marker="o", label=config)
        ax.set_xlabel(series[0].load.split("=")[0] if points else "load")
        ax.set_ylabel(label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({_load_value(p.load) for p in points}))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def _load_value(load: str) -> float:
    return float(load.split("=")[1].rstrip("/s"))


def show(points: list[PointStats]) -> None:
    table_console().print(table(points))
    if scheduled := [p for p in points if p.timeline]:
        table_console().print(schedule_table(scheduled))
