"""The interface between the scheduler and a model implementation (llama.cpp now, PyTorch later)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(slots=True)
class BatchItem:
    """Tokens of one sequence to run in this step, at positions start..start+len(tokens)-1."""

    seq_id: int
    tokens: list[int]
    start: int
    all_logits: bool = False  # logits for every token (prompt logprobs), else for the last only


@dataclass(frozen=True)
class ModelInfo:
    model_id: str
    architecture: str
    description: str
    vocab_size: int
    context_length: int  # what the model was trained for
    bos_token: str
    eos_token: str
    chat_template: str | None
    dtype: str
    device: str


class ModelRunner(Protocol):
    info: ModelInfo

    def tokenize(self, text: str, add_special: bool = True) -> list[int]: ...

    def token_bytes(self, token: int) -> bytes:
        """The bytes a token stands for (special tokens rendered as their text)."""
        ...

    def is_end_of_generation(self, token: int) -> bool: ...

    def is_special(self, token: int) -> bool: ...

    def step(self, batch: list[BatchItem]) -> np.ndarray:
        """Run one forward pass over all items; logits rows in item order (all rows of an
        all_logits item, else its last). The array is only valid until the next call."""
        ...

    def release(self, seq_id: int) -> None:
        """Forget a sequence's cached state so its id can be reused."""
        ...

    def copy_prefix(self, source: int, target: int, tokens: int) -> None:
        """Give `target` the cached state of the first `tokens` positions of `source`."""
        ...

    def kept_from(self, seq_id: int) -> int:
        """The first position whose state `seq_id` still holds (-1: none)."""
        ...

    @property
    def sliding_window(self) -> int:
        """How far back sliding-window layers attend (0: no such layers)."""
        ...

    def load_adapter(self, path: str) -> object:
        """Load a LoRA adapter of this model; a handle for `use_adapter` and `free_adapter`."""
        ...

    def free_adapter(self, handle: object) -> None: ...

    def use_adapter(self, handle: object | None) -> bool:
        """Apply one adapter (None: none) to the forward passes that follow; whether that was a change."""
        ...

    def warm_up(self) -> None:
        """Run a prefill and a decode once, before the engine says it is healthy."""
        ...
