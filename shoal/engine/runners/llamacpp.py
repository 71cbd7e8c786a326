"""A model runner on llama.cpp's low-level batch API: one sequence id per request, one
`llama_decode` per step for the whole batch, logits read in place (no copy)."""
from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from pathlib import Path

import llama_cpp as ll
import numpy as np

from shoal.engine.runners.base import BatchItem, ModelInfo
from shoal.errors import ConfigError, generation_error
from shoal.hardware import use_extra_buffers

log = logging.getLogger(__name__)

_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
               12: "Q3_K_M", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}
_LOG_LEVELS = {3: logging.WARNING, 4: logging.ERROR}  # ggml: 1 debug, 2 info, 3 warn, 4 error


@ll.llama_log_callback
def _forward_llama_log(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    if level in _LOG_LEVELS:
        log.log(_LOG_LEVELS[level], "llama.cpp: %s", text.decode("utf-8", "replace").rstrip())


_backend_ready = False


def init_backend() -> None:
    global _backend_ready
    if not _backend_ready:
        ll.llama_log_set(_forward_llama_log, ctypes.c_void_p(0))
        ll.llama_backend_init()
        _backend_ready = True


class LlamaCppRunner:
    """Loads a GGUF model and runs batched forward passes over many sequences."""

    def __init__(self, model_id: str, path: Path, *, n_ctx: int, n_batch: int, n_seq_max: int,
                 n_threads: int, n_ubatch: int = 512, n_gpu_layers: int = 0, flash_attention: bool = True,
                 extra_buffers: bool | None = None, on_progress: Callable[[float], None] | None = None) -> None:
        init_backend()
        self._keep: list[object] = []
        params = ll.llama_model_default_params()
        params.n_gpu_layers = n_gpu_layers
        # AMX / repacked weights; None: shoal's `auto` (off: AMX crashes on the first decode; shoal.hardware)
        params.use_extra_bufts = use_extra_buffers() if extra_buffers is None else extra_buffers
        if on_progress:
            callback = ll.llama_progress_callback(lambda p, _u: (on_progress(p), True)[1])
            self._keep.append(callback)
            params.progress_callback = callback
        self.model = ll.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise ConfigError(f"llama.cpp could not load {path}")
        ctx_params = ll.llama_context_default_params()
        ctx_params.n_ctx = n_ctx
        ctx_params.n_batch = n_batch
        ctx_params.n_ubatch = min(n_batch, n_ubatch)
        ctx_params.n_seq_max = n_seq_max
        ctx_params.n_threads = ctx_params.n_threads_batch = n_threads
        ctx_params.kv_unified = True  # one KV pool shared by all sequences, so short ones leave room
        ctx_params.flash_attn_type = 1 if flash_attention else 0
        ctx_params.swa_full = False
        ctx_params.no_perf = True
        self.ctx = ll.llama_init_from_model(self.model, ctx_params)
        if not self.ctx:
            raise ConfigError(f"llama.cpp could not create a context of {n_ctx} tokens for {path}")
        self.memory = ll.llama_get_memory(self.ctx)
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.n_batch = n_batch
        self._batch = ll.llama_batch_init(n_batch, 0, 1)
        self._tokens = np.ctypeslib.as_array(self._batch.token, shape=(n_batch,))
        self._pos = np.ctypeslib.as_array(self._batch.pos, shape=(n_batch,))
        self._n_seq = np.ctypeslib.as_array(self._batch.n_seq_id, shape=(n_batch,))
        self._want = np.ctypeslib.as_array(self._batch.logits, shape=(n_batch,))
        self._n_seq[:] = 1
        self._piece = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}
        self._adapter: object | None = None  # the LoRA adapter the context applies (None: the base model)
        self.info = self._describe(model_id, gpu=n_gpu_layers != 0)

    def _meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(512)
        n = ll.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def _describe(self, model_id: str, gpu: bool) -> ModelInfo:
        desc = ctypes.create_string_buffer(256)
        ll.llama_model_desc(self.model, desc, len(desc))
        template = ll.llama_model_chat_template(self.model, None)
        file_type = self._meta("general.file_type")
        return ModelInfo(
            model_id=model_id,
            architecture=self._meta("general.architecture") or "unknown",
            description=desc.value.decode(),
            vocab_size=self.n_vocab,
            context_length=ll.llama_model_n_ctx_train(self.model),
            bos_token=self.token_bytes(ll.llama_vocab_bos(self.vocab)).decode("utf-8", "replace"),
            eos_token=self.token_bytes(ll.llama_vocab_eos(self.vocab)).decode("utf-8", "replace"),
            chat_template=template.decode() if template else None,
            dtype=_FILE_TYPES.get(int(file_type), f"gguf-{file_type}") if file_type else "gguf",
            device="cuda" if gpu else "cpu",
        )

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        data = text.encode()
        capacity = len(data) + 8
        out = (ll.llama_token * capacity)()
        n = ll.llama_tokenize(self.vocab, data, len(data), out, capacity, add_special, True)
        if n < 0:  # pragma: no cover - capacity always suffices: at most one token per byte + specials
            raise generation_error(f"tokenizer needed {-n} tokens")
        return list(out[:n])

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            n = ll.llama_token_to_piece(self.vocab, token, self._piece, len(self._piece), 0, True)
            piece = self._pieces[token] = self._piece.raw[:n]
        return piece

    def is_end_of_generation(self, token: int) -> bool:
        return bool(ll.llama_vocab_is_eog(self.vocab, token))

    def is_special(self, token: int) -> bool:
        return bool(ll.llama_vocab_is_control(self.vocab, token))

    def step(self, batch: list[BatchItem]) -> np.ndarray:
        n = 0
        seq_ids = self._batch.seq_id
        for item in batch:
            count = len(item.tokens)
            end = n + count
            self._tokens[n:end] = item.tokens
            self._pos[n:end] = np.arange(item.start, item.start + count)
            self._want[n:end] = 1 if item.all_logits else 0
            self._want[end - 1] = 1
            for i in range(n, end):
                seq_ids[i][0] = item.seq_id
            n = end
        self._batch.n_tokens = n
        status = ll.llama_decode(self.ctx, self._batch)
        if status != 0:
            raise generation_error(f"llama_decode failed with status {status} (KV cache full or bad batch)")
        rows = int(self._want[:n].sum())
        return np.ctypeslib.as_array(ll.llama_get_logits(self.ctx), shape=(rows, self.n_vocab))

    def load_adapter(self, path: str) -> object:
        """Load a GGUF LoRA adapter of this model (its weights stay in host memory beside the model's)."""
        handle = ll.llama_adapter_lora_init(self.model, path.encode())
        if not handle:
            raise ConfigError(f"llama.cpp could not load the LoRA adapter {path} (is it a GGUF LoRA of this model?)")
        return handle

    def free_adapter(self, handle: object) -> None:
        if handle is self._adapter:
            self.use_adapter(None)
        ll.llama_adapter_lora_free(handle)

    def use_adapter(self, handle: object | None) -> bool:
        """Apply `handle` (None: no adapter) to the steps that follow; whether that changed anything (the
        next step then re-plans its graph)."""
        if handle is self._adapter:
            return False
        if handle is None:
            ll.llama_set_adapters_lora(self.ctx, None, 0, None)
        else:
            adapters = (ll.llama_adapter_lora_p_ctypes * 1)(handle)
            ll.llama_set_adapters_lora(self.ctx, adapters, 1, (ctypes.c_float * 1)(1.0))
        self._adapter = handle
        return True

    def release(self, seq_id: int) -> None:
        ll.llama_memory_seq_rm(self.memory, seq_id, -1, -1)

    def copy_prefix(self, source: int, target: int, tokens: int) -> None:
        """Give sequence `target` the cells of positions 0..tokens-1 of `source` (shared, not recomputed)."""
        ll.llama_memory_seq_cp(self.memory, source, target, 0, tokens)

    def kept_from(self, seq_id: int) -> int:
        """The first position whose cells `seq_id` still holds in every layer (-1: none); sliding-window
        layers drop cells that fall out of their window."""
        return int(ll.llama_memory_seq_pos_min(self.memory, seq_id))

    @property
    def sliding_window(self) -> int:
        """Tokens the sliding-window attention layers look back (0: the model has none)."""
        return int(ll.llama_model_n_swa(self.model))

    def warm_up(self) -> None:
        """A prefill and a decode step on sequence 0, so a model that cannot decode on this machine
        (a crashing kernel, a broken buffer type) fails before its copy enters service."""
        prompt = self.tokenize("shoal warm-up: the quick brown fox jumps over the lazy dog")
        last = int(np.argmax(self.step([BatchItem(0, prompt, 0)])[-1]))
        self.step([BatchItem(0, [last], len(prompt))])
        self.release(0)

    def close(self) -> None:
        if self.ctx:
            ll.llama_batch_free(self._batch)
            ll.llama_free(self.ctx)
            ll.llama_model_free(self.model)
            self.ctx = self.model = None
