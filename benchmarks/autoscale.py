"""The same load ramp (low → high → low, then idle, then low again) against a fixed 1 copy, a fixed max
copies, and an autoscaled component that starts at zero copies (docs/benchmarks.md, "Autoscaling").

Starts its own shoal server on loopback, lets `shoal bench --schedule` deploy and measure each
configuration in turn (copies polled every second), then prints the comparison and the goals:
median latency within 1.5x of fixed-max, at most 60 % of its copy-seconds, no failed request.

    python benchmarks/autoscale.py --out docs/results/autoscale
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import wait_healthy  # noqa: E402

SCHEDULE = "hold:1:20,ramp:1-12:30,hold:12:60,ramp:12-1:30,hold:1:20,hold:0:40,hold:1:20"
ENV = "env.MAX_INPUT_LENGTH=256,env.MAX_TOTAL_TOKENS=512,env.MAX_BATCH_TOTAL_TOKENS=8192"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/results/autoscale"))
    parser.add_argument("--schedule", default=SCHEDULE)
    parser.add_argument("--max-copies", type=int, default=4)
    parser.add_argument("--cpus", type=float, default=0.5, help="CPU cores per copy")
    parser.add_argument("--target-concurrency", type=float, default=3)
    parser.add_argument("--scale-in-cooldown", type=int, default=10)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--port", type=int, default=8500)
    args = parser.parse_args()

    n, cpus = args.max_copies, args.cpus
    configs = [f"fixed 1 copy:copies=1,cpus={cpus:g},memory=512,{ENV}",
               f"fixed {n} copies:copies={n},cpus={cpus:g},memory=512,{ENV}",
               (f"autoscaled 0-{n}:copies=0,cpus={cpus:g},memory=512,{ENV},min_copies=0,max_copies={n},"
                f"target_concurrency={args.target_concurrency:g},scale_in_cooldown={args.scale_in_cooldown},"
                f"scale_out_cooldown=0")]
    url = f"http://127.0.0.1:{args.port}"
    shoal = [sys.executable, "-m", "shoal.cli"]
    with tempfile.TemporaryDirectory(prefix="shoal-autoscale-") as state:
        server = subprocess.Popen([*shoal, "server", "--port", str(args.port), "--state-dir", state,
                                   "--log-level", "warning"])
        try:
            wait_healthy(url, server)
            bench = [*shoal, "bench", "--url", url, "--deploy", "gemma-3-270m", "--schedule", args.schedule,
                     "--prompt-tokens", str(args.prompt_tokens), "--max-new-tokens", str(args.max_new_tokens),
                     "--out", str(args.out)]
            for config in configs:
                bench += ["--config", config]
            print("$", " ".join(f"'{a}'" if " " in a or "," in a else a for a in bench[2:]), flush=True)
            subprocess.run(bench, check=True, env={**os.environ, "COLUMNS": "200"})
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
    summary = summarize(json.loads((args.out / "results.json").read_text())["points"], n)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(markdown(summary))


def summarize(points: list[dict], max_copies: int) -> dict:
    by = {p["config"]: p for p in points}
    fixed_max = by[f"fixed {max_copies} copies"]
    auto = by[f"autoscaled 0-{max_copies}"]
    rows = [{"config": p["config"], "requests": p["requests"], "failed": sum(p["errors"].values()) + p["interrupted"],
             "p50_s": p["latency_p50_s"], "p90_s": p["latency_p90_s"], "p99_s": p["latency_p99_s"],
             "ttft_p50_s": p["ttft_p50_s"], "copy_seconds": p["copy_seconds"], "mean_copies": p["mean_copies"],
             "peak_copies": p["peak_copies"], "cold_starts": p["cold_starts"], "first_cold_start_s": p["cold_start_s"],
             "cold_start_ttfts_s": p["cold_start_ttfts_s"]} for p in points]
    latency_ratio = auto["latency_p50_s"] / fixed_max["latency_p50_s"]
    copy_ratio = auto["copy_seconds"] / fixed_max["copy_seconds"]
    failed = sum(r["failed"] for r in rows)
    return {"rows": rows, "latency_ratio": latency_ratio, "copy_seconds_ratio": copy_ratio,
            "goals": {"median latency <= 1.5x fixed-max": latency_ratio <= 1.5,
                      "copy-seconds <= 60% of fixed-max": copy_ratio <= 0.6, "no failed request": failed == 0}}


def markdown(summary: dict) -> str:
    def s(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    lines = [("| configuration | requests | failed | median s | p90 s | p99 s | TTFT p50 s | copy-seconds "
              "| mean copies | peak copies | cold starts | cold start s (first byte) |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary["rows"]:
        lines.append(f"| {r['config']} | {r['requests']} | {r['failed']} | {s(r['p50_s'])} | {s(r['p90_s'])} | "
                     f"{s(r['p99_s'])} | {s(r['ttft_p50_s'])} | {r['copy_seconds']:.0f} | {r['mean_copies']:.2f} | "
                     f"{r['peak_copies']} | {r['cold_starts']} | {s(r['first_cold_start_s'])} |")
    lines.append("")
    lines.append(f"autoscaled / fixed-max: median latency {summary['latency_ratio']:.2f}x, copy-seconds "
                 f"{summary['copy_seconds_ratio']:.0%}")
    lines += [f"- {goal}: {'met' if ok else 'NOT met'}" for goal, ok in summary["goals"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
