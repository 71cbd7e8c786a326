"""What the virtual users send: prompts of an exact token length, and each target's request format."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from shoal.models.registry import resolve

TargetKind = Literal["shoal", "sagemaker", "tgi", "openai"]
_TEXT = ("The history of science is the study of the development of science and scientific knowledge, "
         "including both the natural and social sciences. Science is a body of empirical, theoretical, "
         "and practical knowledge about the natural world, produced by scientists who emphasize the "
         "observation, explanation, and prediction of real-world phenomena. ")


class PromptMaker:
    """Prompts whose token count (with the BOS token, as the engine counts them) is exact."""

    def __init__(self, model_id: str) -> None:
        from shoal.engine.runners.llamacpp import LlamaCppRunner

        self.runner = LlamaCppRunner(model_id, resolve(model_id), n_ctx=512, n_batch=64, n_seq_max=1, n_threads=1)

    def count(self, text: str) -> int:
        return len(self.runner.tokenize(text))

    def make(self, tokens: int, variant: int = 0) -> str:
        words = _TEXT.split()
        rng = random.Random(variant)
        text_words = words * (tokens // len(words) + 2) if variant == 0 else \
            [rng.choice(words) for _ in range(tokens * 2)]
        ids = self.runner.tokenize(" ".join(text_words), add_special=False)
        n = tokens - 1  # the BOS token
        while n > 0:
            text = b"".join(self.runner.token_bytes(t) for t in ids[:n]).decode("utf-8", "ignore").lstrip()
            have = self.count(text)
            if have == tokens:
                return text
            n += tokens - have  # detokenising can merge or split a token at the edges: adjust and retry
        raise ValueError(f"cannot build a prompt of {tokens} tokens")


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    url: str
    endpoint: str = "default"
    component: str | None = None
    model: str | None = None  # OpenAI's `model`

    def request(self, prompt: str, max_new_tokens: int, sample: bool, seed: int | None) -> tuple[str, dict, bytes]:
        """(url, headers, body) of one streaming request."""
        base = self.url.rstrip("/")
        headers = {"Content-Type": "application/json"}
        if self.kind == "openai":
            body: dict[str, Any] = {"model": self.model or self.component or "default", "prompt": prompt,
                                    "max_tokens": max_new_tokens, "temperature": 1.0 if sample else 0,
                                    "stream": True, "seed": seed}
            return f"{base}/v1/completions", headers, orjson.dumps(body)
        params: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": sample}
        if sample and seed is not None:
            params["seed"] = seed
        body = {"inputs": prompt, "parameters": params, "stream": True}
        if self.kind == "tgi":
            return f"{base}/generate_stream", headers, orjson.dumps(body)
        if self.component:
            headers["X-Amzn-SageMaker-Inference-Component"] = self.component
        return f"{base}/endpoints/{self.endpoint}/invocations", headers, orjson.dumps(body)


def load_prompts(path: Path) -> list[str]:
    """A JSONL file of {"prompt": ...} (or {"inputs": ...}) lines."""
    prompts = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = orjson.loads(line)
            prompts.append(row.get("prompt") or row.get("inputs") or "")
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts
