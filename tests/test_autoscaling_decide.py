"""The scaling decision and the policy's rules, as pure functions over plain data."""
from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from shoal.control.autoscaling.decide import Decision, LastActions, Sample, decide
from shoal.control.autoscaling.policy import MIN_ABOVE_MAX, Metric, ScalingPolicy, StepScaling, TargetTracking

NONE = LastActions()


def tracking(target: float = 4, out: int = 0, scale_in: int = 60, metric: Metric = Metric.CONCURRENCY,
             name: str = "t", disable_in: bool = False) -> TargetTracking:
    return TargetTracking(name=name, metric=metric, target=target, scale_out_cooldown_s=out,
                          scale_in_cooldown_s=scale_in, disable_scale_in=disable_in)


def policy(lo: int = 0, hi: int = 4, *trackers: TargetTracking,
           steps: list[StepScaling] | None = None) -> ScalingPolicy:
    return ScalingPolicy(component="c", min_copies=lo, max_copies=hi,
                         tracking=list(trackers) if trackers else [tracking()], steps=steps or [])


def flat(concurrency: int, seconds: int = 60, now: float = 1000.0, invocations_per_s: float = 0) -> list[Sample]:
    """One sample a second over the last `seconds`, ending at `now`."""
    return [Sample(now - seconds + i, concurrency, int(i * invocations_per_s)) for i in range(seconds + 1)]


# -- bounds ------------------------------------------------------------------------------------------------
def test_below_the_minimum_is_brought_up_whatever_the_load() -> None:
    d = decide(policy(2, 4), flat(0), 0, NONE, 1000.0)
    assert d == Decision(2, "below the minimum of 2 copies: 0 → 2 copies")


def test_above_the_maximum_is_brought_down_whatever_the_load() -> None:
    d = decide(policy(0, 3), flat(50), 5, NONE, 1000.0)
    assert d == Decision(3, "above the maximum of 3 copies: 5 → 3 copies")


def test_no_samples_no_change() -> None:
    assert decide(policy(0, 4), [], 2, NONE, 1000.0) == Decision(2)


# -- from zero -----------------------------------------------------------------------------------------------
def test_a_request_at_zero_copies_starts_one() -> None:
    samples = [*flat(0, now=999.0), Sample(1000.0, 1, 0)]
    assert decide(policy(0, 4), samples, 0, NONE, 1000.0) == Decision(1, "1 request waiting at 0 copies: 0 → 1 copy")


def test_many_requests_at_zero_copies_start_what_the_target_wants() -> None:
    d = decide(policy(0, 4, tracking(target=2)), flat(5), 0, NONE, 1000.0)
    assert d == Decision(3, "5 requests waiting at 0 copies: 0 → 3 copies")


def test_a_step_policy_says_how_many_copies_start_from_zero() -> None:
    step = StepScaling(name="from-zero", config={"AdjustmentType": "ChangeInCapacity",
                                                 "StepAdjustments": [{"ScalingAdjustment": 2}]})
    d = decide(policy(0, 4, steps=[step]), [Sample(1000.0, 1, 0)], 0, NONE, 1000.0)
    assert d == Decision(2, "1 request waiting at 0 copies: 0 → 2 copies")
    assert decide(policy(0, 1, steps=[step]), [Sample(1000.0, 1, 0)], 0, NONE, 1000.0).desired == 1


def test_from_zero_needs_no_target_tracking_and_no_room() -> None:
    bare = ScalingPolicy(component="c", min_copies=0, max_copies=2)
    assert decide(bare, [Sample(1000.0, 3, 0)], 0, NONE, 1000.0).desired == 1
    invocations_only = policy(0, 2, tracking(metric=Metric.INVOCATIONS, target=60))
    assert decide(invocations_only, [Sample(1000.0, 1, 0)], 0, NONE, 1000.0).desired == 1
    assert decide(ScalingPolicy(component="c", min_copies=0, max_copies=0), [Sample(1000.0, 3, 0)], 0, NONE,
                  1000.0) == Decision(0)


def test_zero_copies_and_nobody_waiting_stays_at_zero() -> None:
    assert decide(policy(0, 4), flat(0), 0, NONE, 1000.0) == Decision(0)


# -- scale-out -------------------------------------------------------------------------------------------
def test_scale_out_to_what_the_target_wants_with_its_cause() -> None:
    d = decide(policy(0, 8), flat(19), 2, NONE, 1000.0)
    assert d == Decision(5, "concurrency 9.5 per copy > target 4: 2 → 5 copies")


def test_scale_out_is_capped_at_the_maximum_and_says_so() -> None:
    d = decide(policy(0, 4), flat(19), 2, NONE, 1000.0)
    assert d == Decision(4, "concurrency 9.5 per copy > target 4: 2 → 4 copies (maximum 4)")
    assert decide(policy(0, 4), flat(19), 4, NONE, 1000.0) == Decision(4)


def test_scale_out_follows_the_mean_of_the_last_seconds_not_one_sample() -> None:
    samples = flat(4)[:-1] + [Sample(1000.0, 12, 0)]  # (4 + 4 + 12) / 3 over the last 3 s
    assert decide(policy(0, 8), samples, 1, NONE, 1000.0).desired == 2


def test_load_exactly_at_target_does_not_scale_out() -> None:
    assert decide(policy(0, 8), flat(8), 2, NONE, 1000.0) == Decision(2)


def test_copies_asked_for_count_during_the_scale_out_cooldown() -> None:
    last = LastActions(out_at=990.0, out_to=5)
    p = policy(0, 8, tracking(out=30))
    assert decide(p, flat(16), 3, last, 1000.0) == Decision(3)  # wants 4; 5 were asked for 10 s ago
    assert decide(p, flat(24), 3, last, 1000.0).desired == 6  # wants more than was asked for
    assert decide(p, flat(16), 3, last, 1030.0).desired == 4  # cooldown over


# -- scale-in --------------------------------------------------------------------------------------------
def test_scale_in_after_a_whole_cooldown_of_low_load() -> None:
    d = decide(policy(0, 4, tracking(scale_in=60)), flat(1, 60), 3, NONE, 1000.0)
    assert d == Decision(1, "concurrency 0.333 per copy (peak over 60s) < target 4: 3 → 1 copy")


def test_scale_in_to_zero_when_idle() -> None:
    d = decide(policy(0, 4, tracking(scale_in=60)), flat(0, 60), 2, NONE, 1000.0)
    assert d == Decision(0, "concurrency 0 per copy (peak over 60s) < target 4: 2 → 0 copies")


def test_scale_in_stops_at_the_minimum() -> None:
    d = decide(policy(1, 4, tracking(scale_in=60)), flat(0, 60), 3, NONE, 1000.0)
    assert d == Decision(1, "concurrency 0 per copy (peak over 60s) < target 4: 3 → 1 copy (minimum 1)")
    assert decide(policy(1, 4, tracking(scale_in=60)), flat(0, 60), 1, NONE, 1000.0) == Decision(1)


def test_no_scale_in_before_the_cooldown_has_been_observed() -> None:
    assert decide(policy(0, 4, tracking(scale_in=60)), flat(0, 30), 2, NONE, 1000.0) == Decision(2)


def test_a_peak_within_the_cooldown_holds_the_copies() -> None:
    samples = flat(0, 60)
    samples[10] = Sample(samples[10].at, 12, 0)
    assert decide(policy(0, 4, tracking(scale_in=60)), samples, 3, NONE, 1000.0) == Decision(3)
    assert decide(policy(0, 4, tracking(scale_in=40)), samples, 3, NONE, 1000.0).desired == 0


def test_no_second_scale_in_within_the_cooldown() -> None:
    p = policy(0, 4, tracking(scale_in=60))
    assert decide(p, flat(0, 60), 2, LastActions(in_at=970.0), 1000.0) == Decision(2)
    assert decide(p, flat(0, 60), 2, LastActions(in_at=940.0), 1000.0).desired == 0


def test_disable_scale_in() -> None:
    assert decide(policy(0, 4, tracking(disable_in=True)), flat(0), 3, NONE, 1000.0) == Decision(3)
    assert decide(policy(0, 8, tracking(disable_in=True)), flat(20), 3, NONE, 1000.0).desired == 5


def test_zero_cooldown_scales_in_on_the_last_sample() -> None:
    assert decide(policy(0, 4, tracking(scale_in=0)), [Sample(1000.0, 0, 0)], 2, NONE, 1000.0).desired == 0


# -- several policies, invocations -------------------------------------------------------------------------
def test_out_when_any_policy_wants_more_in_only_when_all_want_fewer() -> None:
    a = tracking(target=4, name="a", scale_in=60)
    b = tracking(target=2, name="b", scale_in=60)
    assert decide(policy(0, 8, a, b), flat(6), 1, NONE, 1000.0).desired == 3  # b wants 3, a wants 2
    assert decide(policy(0, 8, a, b), flat(3, 60), 3, NONE, 1000.0).desired == 2  # a wants 1, b wants 2


def test_invocations_per_copy_per_minute() -> None:
    p = policy(0, 8, tracking(metric=Metric.INVOCATIONS, target=60, scale_in=60))
    samples = flat(1, 60, invocations_per_s=130 / 60)
    d = decide(p, samples, 1, NONE, 1000.0)
    assert d.desired == 3 and d.cause == "invocations 130 per copy per minute > target 60: 1 → 3 copies"
    assert decide(p, [Sample(1000.0, 1, 10)], 1, NONE, 1000.0) == Decision(1)  # one sample: no rate yet
    slow = flat(1, 60, invocations_per_s=30 / 60)
    assert decide(p, slow, 3, NONE, 1000.0).desired == 1


def test_a_few_requests_in_the_first_seconds_are_counted_not_extrapolated() -> None:
    """3 requests in the first 5 s of a server's life are 3 a minute (a policy targeting 2 a minute per copy
    wants 2 copies), not 36 a minute."""
    p = policy(0, 8, tracking(metric=Metric.INVOCATIONS, target=2, scale_in=60))
    early = [Sample(1000.0 + i, 1, min(i, 3)) for i in range(6)]
    d = decide(p, early, 1, NONE, 1005.0)
    assert d.desired == 2 and d.cause == "invocations 3 per copy per minute > target 2: 1 → 2 copies"


def test_every_decision_stays_in_bounds_and_explains_itself() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        lo = rng.randint(0, 3)
        hi = rng.randint(lo, 6)
        p = policy(lo, hi, tracking(target=rng.choice([0.5, 1, 4]), out=rng.choice([0, 30]),
                                    scale_in=rng.choice([0, 10, 60])))
        samples = [Sample(1000.0 - 60 + i, rng.randint(0, 20) if rng.random() < 0.3 else 0, 0) for i in range(61)]
        copies = rng.randint(0, 8)
        last = rng.choice([NONE, LastActions(990.0, rng.randint(0, 8), None), LastActions(None, 0, 995.0)])
        d = decide(p, samples, copies, last, 1000.0)
        if lo <= copies <= hi or d.changes(copies):
            assert lo <= d.desired <= hi
        assert d.changes(copies) == bool(d.cause)
        if d.desired < copies and lo <= copies <= hi:  # a scale-in never goes below what the peak needs
            peak = max(s.concurrency for s in samples if s.at > 1000.0 - p.tracking[0].scale_in_cooldown_s - 1e-9)
            assert d.desired >= min(copies, max(lo, -(-peak // p.tracking[0].target)))


# -- the policy's own rules ---------------------------------------------------------------------------------
def test_policy_rules_in_aws_words() -> None:
    with pytest.raises(ValidationError, match=MIN_ABOVE_MAX):
        ScalingPolicy(component="c", min_copies=3, max_copies=1)
    with pytest.raises(ValidationError, match="Minimum capacity cannot be less than 0"):
        ScalingPolicy(component="c", min_copies=-1, max_copies=1)
    with pytest.raises(ValidationError, match="Value '0.0' at 'targetTrackingScalingPolicyConfiguration.targetValue' "
                                              "failed to satisfy constraint: Member must have value greater than 0"):
        TargetTracking(name="t", target=0.0)


def test_policy_edits_replace_by_name() -> None:
    p = policy(0, 4, tracking(name="a"))
    p = p.with_tracking(tracking(target=8, name="a")).with_step(StepScaling(name="s"))
    assert [t.target for t in p.tracking] == [8] and p.has("s") and p.from_zero == 1
    assert not p.without("a").has("a") and p.without("s").steps == []
    assert p.describe() == "0-4 copies, concurrency 8 per copy"


def test_suspended_scaling_keeps_the_bounds() -> None:
    out_off = policy(0, 4, tracking(scale_in=60)).model_copy(update={"scale_out_suspended": True})
    assert decide(out_off, flat(19), 1, NONE, 1000.0) == Decision(1)
    assert decide(out_off, [Sample(1000.0, 3, 0)], 0, NONE, 1000.0) == Decision(0)
    assert decide(out_off, flat(0, 60), 2, NONE, 1000.0).desired == 0
    in_off = policy(1, 4, tracking(scale_in=60)).model_copy(update={"scale_in_suspended": True})
    assert decide(in_off, flat(0, 60), 3, NONE, 1000.0) == Decision(3)
    assert decide(in_off, flat(19), 1, NONE, 1000.0).desired == 4
    assert decide(in_off, flat(0), 0, NONE, 1000.0).desired == 1  # below the minimum all the same
