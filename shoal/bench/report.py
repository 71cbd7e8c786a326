"""Benchmark output: the seed's table in the terminal, JSON, CSV and PNG plots."""
from __future__ import annotations

import csv
import json
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


def write(points: list[PointStats], out: Path, meta: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows = [p.row() for p in points]
    (out / "results.json").write_text(json.dumps({"meta": meta, "points": rows}, indent=2))
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()})
    return [out / "results.json", out / "results.csv", *plot(points, out)]


def plot(points: list[PointStats], out: Path) -> list[Path]:
    """Throughput and median latency against load, one line per configuration."""
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
