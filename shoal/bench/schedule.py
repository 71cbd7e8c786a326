"""Load schedules: virtual users or arrival rates that change over time (k6's ramping-vus and
ramping-arrival-rate), written as stages:

    ramp:1-16:60,hold:16:60,ramp:16-1:60     # 1 → 16 over a minute, a minute at 16, back down
    hold:2:30,step:12:20,hold:2:60            # a step up (a spike) and back
    hold:0:90                                 # idle: nothing for 90 s (let an autoscaler scale to zero)

`ramp:A-B:S` goes linearly from A to B over S seconds; `hold:N:S` (or `step:N:S`, which reads better for
a sudden change) stays at N for S seconds. Values are virtual users (closed loop) or requests per second
(open loop); seconds may end in `s`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_STAGE = re.compile(r"^(?P<kind>ramp|hold|step):(?P<a>\d+(?:\.\d+)?)(?:-(?P<b>\d+(?:\.\d+)?))?:(?P<s>\d+(?:\.\d+)?)s?$")


@dataclass(frozen=True)
class Stage:
    start: float
    end: float
    seconds: float


@dataclass(frozen=True)
class Schedule:
    stages: tuple[Stage, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> Schedule:
        stages = []
        for item in filter(None, (s.strip() for s in text.split(","))):
            m = _STAGE.match(item)
            if not m:
                raise ValueError(f"cannot read stage '{item}': expected ramp:FROM-TO:SECONDS or hold:N:SECONDS "
                                 f"(or step:N:SECONDS)")
            a, b, seconds = float(m["a"]), m["b"], float(m["s"])
            if (m["kind"] == "ramp") != (b is not None):
                raise ValueError(f"stage '{item}': a ramp goes FROM-TO, a {m['kind']} has one value")
            if seconds <= 0:
                raise ValueError(f"stage '{item}' lasts no time")
            stages.append(Stage(a, float(b) if b is not None else a, seconds))
        if not stages:
            raise ValueError("an empty schedule")
        return cls(tuple(stages), text)

    @property
    def duration(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def peak(self) -> float:
        return max(max(s.start, s.end) for s in self.stages)

    def at(self, t: float) -> float:
        """The value `t` seconds in (the last value after the end)."""
        for stage in self.stages:
            if t < stage.seconds:
                return stage.start + (stage.end - stage.start) * max(t, 0.0) / stage.seconds
            t -= stage.seconds
        return self.stages[-1].end

    def mean(self) -> float:
        return sum((s.start + s.end) / 2 * s.seconds for s in self.stages) / self.duration
