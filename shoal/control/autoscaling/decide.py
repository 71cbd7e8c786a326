"""The scaling decision: samples of a component's load + its policy + its copies + its last actions →
how many copies it should have, and why. A pure function over plain data, like target tracking:

- load: concurrent requests (in flight + queued at the gateway), averaged over the last
  `OUT_WINDOW_S` for scale-out and at its peak over the scale-in cooldown for scale-in; or
  invocations per minute over the last `INVOCATIONS_WINDOW_S` (at least the scale-in cooldown when
  scaling in).
- each target tracking policy wants ceil(load / target) copies; out when any wants more than there are
  (at once: copies asked for count as capacity, so a ramp adds copies as it goes, not all at once),
  in when every policy wants fewer for its whole scale-in cooldown and no scale-in happened within it.
- bounds: never below MinCapacity or above MaxCapacity; a copy count outside them is brought inside.
- zero copies: a request waiting starts `from_zero` copies (1, or what a step policy says) at once.
- suspended (Application Auto Scaling's SuspendedState): no scale-out (from zero included) or no scale-in;
  the bounds still hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from shoal.control.autoscaling.policy import Metric, ScalingPolicy, TargetTracking

OUT_WINDOW_S = 3.0  # scale-out looks at the mean load of the last seconds (not one sample)
INVOCATIONS_WINDOW_S = 60.0  # invocations are counted per minute, as SageMaker's metric


@dataclass(frozen=True)
class Sample:
    """A component's load at one moment (monotonic seconds)."""

    at: float
    concurrency: int  # requests in flight on its copies + waiting in its queue
    invocations: int  # requests answered so far (a counter)


@dataclass(frozen=True)
class LastActions:
    out_at: float | None = None  # when the last scale-out was decided
    out_to: int = 0  # the copy count it asked for
    in_at: float | None = None


@dataclass(frozen=True)
class Decision:
    desired: int
    cause: str = ""  # empty when nothing changes

    def changes(self, copies: int) -> bool:
        return self.desired != copies


def _copies(n: int) -> str:
    return f"{n} cop{'y' if n == 1 else 'ies'}"


def _window(samples: list[Sample], now: float, seconds: float) -> list[Sample]:
    return [s for s in samples if s.at > now - seconds - 1e-9] or samples[-1:]


def _covers(samples: list[Sample], now: float, seconds: float) -> bool:
    """The samples reach back `seconds` (a scale-in needs the whole cooldown observed)."""
    return bool(samples) and samples[0].at <= now - seconds + 1e-9


def rate_per_minute(samples: list[Sample], now: float, seconds: float) -> float | None:
    """Invocations per minute over the last `seconds`: the requests counted in that window, over the whole
    window even when the samples span less of it (3 requests in the first 5 s of a minute are 3 a minute, as
    SageMaker's per-minute sum counts them, not 36)."""
    window = _window(samples, now, seconds)
    if len(window) < 2:
        return None
    return (window[-1].invocations - window[0].invocations) / max(window[-1].at - window[0].at, seconds) * 60.0


def _load(t: TargetTracking, samples: list[Sample], now: float, scale_in: bool) -> float | None:
    """The tracked metric for the whole component (not yet per copy); None without enough samples."""
    if t.metric is Metric.CONCURRENCY:
        if scale_in:
            return float(max(s.concurrency for s in _window(samples, now, t.scale_in_cooldown_s)))
        window = _window(samples, now, OUT_WINDOW_S)
        return sum(s.concurrency for s in window) / len(window)
    return rate_per_minute(samples, now, max(INVOCATIONS_WINDOW_S, t.scale_in_cooldown_s if scale_in else 0))


def _wanted(load: float, target: float) -> int:
    return math.ceil(load / target - 1e-9) if load > 0 else 0


def _reason(t: TargetTracking, load: float, copies: int, sign: str, peak: bool) -> str:
    per_copy = load / copies if copies else load
    over = f" (peak over {t.scale_in_cooldown_s}s)" if peak and t.metric is Metric.CONCURRENCY else ""
    return f"{t.metric.label} {per_copy:.3g} {t.metric.unit}{over} {sign} target {t.target:g}"


def decide(policy: ScalingPolicy, samples: list[Sample], copies: int, last: LastActions, now: float) -> Decision:
    """How many copies the component should have now, and why (`samples` oldest first, ending now)."""
    lo, hi = policy.min_copies, policy.max_copies
    if copies < lo:
        return Decision(lo, f"below the minimum of {_copies(lo)}: {copies} → {_copies(lo)}")
    if copies > hi:
        return Decision(hi, f"above the maximum of {_copies(hi)}: {copies} → {_copies(hi)}")
    if not samples or policy.scale_out_suspended and policy.scale_in_suspended:
        return Decision(copies)
    waiting = samples[-1].concurrency
    if policy.scale_out_suspended:
        return _scale_in(policy, samples, copies, last, now)
    if copies == 0 and waiting > 0 and hi > 0:
        wanted = [_wanted(load, t.target) for t in policy.tracking
                  if (load := _load(t, samples, now, False)) is not None]
        n = min(hi, max([policy.from_zero, *wanted]))
        noun = "request" if waiting == 1 else "requests"
        return Decision(n, f"{waiting} {noun} waiting at 0 copies: 0 → {_copies(n)}")

    # scale-out: the copies asked for by the last scale-out count while its cooldown runs
    base = copies
    if last.out_at is not None and any(now - last.out_at < t.scale_out_cooldown_s for t in policy.tracking):
        base = max(copies, last.out_to)
    out = [(n, t, load) for t in policy.tracking
           if (load := _load(t, samples, now, False)) is not None and (n := _wanted(load, t.target)) > base]
    if out:
        n, t, load = max(out, key=lambda o: o[0])
        to = min(hi, n)
        if to > copies:
            capped = f" (maximum {hi})" if n > hi else ""
            return Decision(to, f"{_reason(t, load, copies, '>', False)}: {copies} → {_copies(to)}{capped}")
        return Decision(copies)
    return _scale_in(policy, samples, copies, last, now)


def _scale_in(policy: ScalingPolicy, samples: list[Sample], copies: int, last: LastActions, now: float) -> Decision:
    """Every policy must want fewer copies over its whole cooldown, and none may forbid it."""
    lo = policy.min_copies
    if copies == lo or not policy.tracking or policy.scale_in_suspended:
        return Decision(copies)
    wants: list[tuple[int, TargetTracking, float]] = []
    for t in policy.tracking:
        if t.disable_scale_in or not _covers(samples, now, t.scale_in_cooldown_s):
            return Decision(copies)
        if last.in_at is not None and now - last.in_at < t.scale_in_cooldown_s:
            return Decision(copies)
        if (load := _load(t, samples, now, True)) is None:
            return Decision(copies)
        wants.append((_wanted(load, t.target), t, load))
    n, t, load = max(wants, key=lambda w: w[0])
    to = max(lo, n)
    if to >= copies:
        return Decision(copies)
    floor = f" (minimum {lo})" if n < lo else ""
    return Decision(to, f"{_reason(t, load, copies, '<', True)}: {copies} → {_copies(to)}{floor}")
