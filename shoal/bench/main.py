"""`shoal bench`: measure a target, or deploy each configuration on a shoal server and measure it."""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from shoal.bench import report
from shoal.bench.loadgen import Workload
from shoal.bench.stats import PointStats, Slo
from shoal.bench.sweep import Config, Load, progress_display, sweep
from shoal.bench.workload import PromptMaker, Target, load_prompts

console = Console(stderr=True)


@dataclass
class BenchPlan:
    target: Target
    loads: list[Load]
    duration_s: float
    grace_s: float
    prompt_tokens: int
    max_new_tokens: int
    vary_prompts: bool
    prompts_file: Path | None
    sample: bool
    tokenizer: str
    slo: Slo | None
    out: Path
    deploy_model: str | None = None
    configs: list[Config] | None = None


def _prompts(plan: BenchPlan) -> list[str]:
    if plan.prompts_file:
        return load_prompts(plan.prompts_file)
    maker = PromptMaker(plan.tokenizer)
    return [maker.make(plan.prompt_tokens, v) for v in range(64 if plan.vary_prompts else 1)]


def _slug(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-")[:40] or "config"


async def _measure(plan: BenchPlan, prompts: list[str], target: Target, config: str, progress) -> list[PointStats]:  # type: ignore[no-untyped-def]
    workload = Workload(target, prompts, plan.max_new_tokens, plan.sample)
    copies_url = (f"{target.url.rstrip('/')}/api/inference-components/{target.component}"
                  if target.kind in ("shoal", "sagemaker") and target.component else None)
    return await sweep(workload, config, plan.loads, plan.duration_s, plan.grace_s, plan.slo, progress, copies_url)


async def _deployed(plan: BenchPlan, prompts: list[str], config: Config, progress) -> list[PointStats]:  # type: ignore[no-untyped-def]
    from shoal.sdk import Model, Predictor, ResourceRequirements, Session

    session = Session(plan.target.url)
    endpoint = f"bench-{_slug(config.name)}"
    resources = ResourceRequirements(requests={"copies": config.copies, "num_cpus": config.cpus,
                                               "memory": config.memory})
    model = Model(plan.deploy_model or "gemma-3-270m", env=config.env, name="bench", session=session)
    console.print(f"deploying {config.name}: {config.copies} x {config.cpus:g} CPU, {config.routing}")
    predictor: Predictor = await asyncio.to_thread(
        model.deploy, endpoint, "local", 1, resources, 600, config.routing, f"bench-{_slug(config.name)}")
    if config.autoscaled:
        console.print(f"autoscaling {config.name}: {config.min_copies}-{config.max_copies} copies, target "
                      f"concurrency {config.target_concurrency}, invocations {config.target_invocations}")
        await asyncio.to_thread(predictor.autoscale, config.min_copies or 0, config.max_copies,
                                config.target_concurrency, config.target_invocations, config.scale_out_cooldown,
                                config.scale_in_cooldown)
    try:
        target = Target("shoal", plan.target.url, endpoint, predictor.component_name)
        return await _measure(plan, prompts, target, config.name, progress)
    finally:
        await asyncio.to_thread(predictor.delete_endpoint, True)


async def run(plan: BenchPlan) -> list[PointStats]:
    prompts = _prompts(plan)
    points: list[PointStats] = []
    with progress_display() as progress:
        if plan.deploy_model:
            for config in plan.configs or [Config("default")]:
                points += await _deployed(plan, prompts, config, progress)
        else:
            points += await _measure(plan, prompts, plan.target, plan.target.component or plan.target.kind,
                                     progress)
    report.show(points)
    meta = {"target": plan.target.__dict__, "duration_s": plan.duration_s, "grace_s": plan.grace_s,
            "schedules": [p.label for p in plan.loads if p.schedule],
            "prompt_tokens": None if plan.prompts_file else plan.prompt_tokens,
            "max_new_tokens": plan.max_new_tokens, "sample": plan.sample, "vary_prompts": plan.vary_prompts,
            "configs": [c.__dict__ for c in plan.configs or []], "model": plan.deploy_model}
    for path in report.write(points, plan.out, meta):
        console.print(f"wrote {path}")
    return points
