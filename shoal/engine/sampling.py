"""Next-token choice per request, as TGI's NextTokenChooser: penalties, warpers, greedy or seeded sampling.

Logits arrive as one float32 matrix (a row per sequence); the scheduler takes one argmax over the whole
matrix for plain greedy rows, and the rest come here row by row. The reported logprob is the chosen token's
log-probability under the distribution it was drawn from (after penalties and warpers), as in TGI.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# top_p/typical_p look at this many best candidates first and sort the whole vocabulary only if needed.
_CANDIDATES = 512


@dataclass
class SamplingParams:
    do_sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None  # OpenAI's: once per token already generated
    seed: int | None = None
    top_n_tokens: int = 0
    logit_bias: dict[int, float] | None = None  # OpenAI's: added to the logits before anything else

    def __post_init__(self) -> None:
        # TGI: any warper switches sampling on.
        warped = (self.temperature not in (None, 1.0) or self.top_k is not None
                  or self.top_p is not None or self.typical_p is not None)
        self.do_sample = self.do_sample or warped

    @property
    def plain_greedy(self) -> bool:
        return (not self.do_sample and self.repetition_penalty in (None, 1.0) and not self.frequency_penalty
                and not self.presence_penalty and not self.logit_bias)


@dataclass
class Choice:
    token: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)  # (token, logprob), best first


class Sampler:
    """Holds one request's random state and token counts (for the penalties)."""

    def __init__(self, params: SamplingParams, context: list[int]) -> None:
        self.params = params
        self.rng = np.random.default_rng(params.seed) if params.do_sample else None
        self.counts: dict[int, int] = {}
        self.seen: set[int] = set(context)

    def observe(self, token: int) -> None:
        self.counts[token] = self.counts.get(token, 0) + 1
        self.seen.add(token)

    def choose(self, logits: np.ndarray) -> Choice:
        p = self.params
        scores = logits.astype(np.float32, copy=True)
        if p.logit_bias:
            scores[np.fromiter(p.logit_bias, dtype=np.int64)] += np.fromiter(p.logit_bias.values(), dtype=np.float32)
        if p.repetition_penalty not in (None, 1.0) and self.seen:
            ids = np.fromiter(self.seen, dtype=np.int64)
            picked = scores[ids]
            scores[ids] = np.where(picked > 0, picked / p.repetition_penalty, picked * p.repetition_penalty)
        if (p.frequency_penalty or p.presence_penalty) and self.counts:
            ids = np.fromiter(self.counts.keys(), dtype=np.int64)
            counts = np.fromiter(self.counts.values(), dtype=np.float32)
            scores[ids] -= (p.frequency_penalty or 0.0) * counts + (p.presence_penalty or 0.0)
        if not p.do_sample:
            logprobs = _log_softmax(scores)
            token = int(np.argmax(scores))
            return Choice(token, float(logprobs[token]), _top(logprobs, p.top_n_tokens))
        if p.temperature not in (None, 1.0):
            scores /= p.temperature
        logprobs = _log_softmax(_warp(scores, p))
        probs = np.exp(logprobs)
        token = int(np.searchsorted(np.cumsum(probs), self.rng.random() * probs.sum()))  # type: ignore[union-attr]
        token = min(token, len(probs) - 1)
        return Choice(token, float(logprobs[token]), _top(logprobs, p.top_n_tokens))


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    finite = scores[np.isfinite(scores)]
    m = finite.max() if finite.size else 0.0
    shifted = scores - m
    return shifted - np.log(np.exp(shifted).sum())


def _top(logprobs: np.ndarray, n: int) -> list[tuple[int, float]]:
    if n <= 0:
        return []
    ids = np.argpartition(-logprobs, n)[:n]
    ids = ids[np.argsort(-logprobs[ids])]
    return [(int(i), float(logprobs[i])) for i in ids]


def _warp(scores: np.ndarray, p: SamplingParams) -> np.ndarray:
    """Mask (set to -inf) every token that top_k, top_p or typical_p excludes."""
    if p.top_k is not None and p.top_k < len(scores):
        kth = np.partition(scores, -p.top_k)[-p.top_k]
        scores[scores < kth] = -np.inf
    if p.top_p is not None and p.top_p < 1.0:
        _keep_mass(scores, _log_softmax(scores), p.top_p)
    if p.typical_p is not None and p.typical_p < 1.0:
        logprobs = _log_softmax(scores)
        probs = np.exp(logprobs)
        entropy = -np.nansum(probs * np.where(np.isfinite(logprobs), logprobs, 0.0))
        surprise_gap = np.abs(-logprobs - entropy)
        _keep_mass(scores, -surprise_gap, p.typical_p, mass=probs)
    return scores


def _keep_mass(scores: np.ndarray, rank: np.ndarray, keep: float, mass: np.ndarray | None = None) -> None:
    """Keep the best-ranked tokens whose probability mass first reaches `keep`; mask the rest."""
    mass = np.exp(rank) if mass is None else mass
    n = len(scores)
    for width in (min(_CANDIDATES, n), n):
        ids = np.argpartition(-rank, width - 1)[:width] if width < n else np.arange(n)
        ids = ids[np.argsort(-rank[ids], kind="stable")]
        cumulative = np.cumsum(mass[ids])
        if cumulative[-1] >= keep or width == n:
            cut = int(np.searchsorted(cumulative, keep)) + 1  # include the token that crosses `keep`
            masked = np.ones(n, dtype=bool)
            masked[ids[:cut]] = False
            scores[masked] = -np.inf
            return
