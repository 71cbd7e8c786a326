"""`shoal plan`: which copies of which model fit an instance type, and why.

Pure functions over plain data: no downloads, no network, no accelerator needed.

Memory model, per copy spread over N accelerators by tensor parallelism (N in 1, 2, 4, 8; N must
divide the attention heads, which tensor parallelism splits):
- weights = parameters x bits per weight / 8. The methods of TGI's HF_MODEL_QUANTIZE (gptq, awq,
  bitsandbytes, eetq, fp8, ...) leave the embeddings and the LM head in fp16; a GGUF type's bits
  are an average over the whole file. GPTQ/AWQ 4-bit: 4.25 bits (an fp16 scale and zero per group
  of 128 weights).
- KV cache = 2 (K and V) x layers x KV heads x head dim x bytes per value (2; 1 for an fp8 cache)
  x MAX_BATCH_TOTAL_TOKENS, which TGI reserves up front. Beyond N = KV heads the KV heads are
  replicated (as vLLM does), so an accelerator holds KV / min(N, KV heads).
- Each accelerator keeps OVERHEAD_GIB = 2 GiB for itself: what the driver reserves, the CUDA
  context, cuBLAS/NCCL workspaces and prefill activations. Why a fixed 2 GiB and not vLLM's
  gpu_memory_utilization 0.9 (4 GiB of an A100-40GB): the seed's table puts Llama 2 13B fp16 with
  16384 batch tokens (24.2 GiB weights + 12.5 GiB KV = 36.7 GiB) on one A100-40GB, which leaves at
  most 3.3 GiB, and gives Llama 2 70B GPTQ (34.8 + 5.0 GiB) two A100s, which takes more than
  0.16 GiB; 2 GiB is what a CUDA context plus workspaces take in practice, and TGI
  (CUDA_MEMORY_FRACTION 1.0) sizes its cache from what is free after warmup.
- N is the smallest count with weights / N + KV / min(N, KV heads) <= memory - overhead. Copies
  are then what `place` fits on one empty instance with N accelerators and the given cores and
  memory per copy: the answer `shoal deploy` would get.

Roofline, an upper bound on requests/s and not a forecast: a copy serves requests of P prompt and
G new tokens in cycles of B = min(MAX_BATCH_TOTAL_TOKENS // (P + G), MAX_CONCURRENT_REQUESTS)
requests (TGI reserves P + G tokens per request): one prefill of B prompts (2 x parameters FLOPs
per token) and G decode steps, each reading every weight once for the batch plus the KV cache of
B sequences of P + G/2 tokens on average. A phase takes max(FLOPs / peak, bytes / bandwidth) over
N accelerators, at the accelerator's dense fp16 peak and full memory bandwidth, with perfect
tensor parallelism. It ignores attention FLOPs, communication between accelerators, kernel
efficiency (real kernels reach ~50-70% of peak), scheduling, tokenization and HTTP, and requests
arriving out of step, so a measurement below it is expected: the seed measured 26.17 req/s for
Llama 2 13B on ml.p4d.24xlarge, about half of this bound. Mixture-of-experts models count all
experts in memory and in the roofline (dense), which understates their decode rate.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shoal.control.placement import max_copies
from shoal.control.resources import ComputeRequirements, InstanceType, instance_type
from shoal.errors import ShoalError

GIB = 1 << 30
OVERHEAD_GIB = 2.0
TP_SIZES = (1, 2, 4, 8)


class PlanError(ShoalError):
    """A plan that cannot be made: an unknown model, instance type or setting."""


@dataclass(frozen=True)
class Architecture:
    """The shape of a decoder-only transformer, as its config.json gives it."""

    name: str
    parameters: int
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tied_embeddings: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def embedding_parameters(self) -> int:
        """The input embeddings and the LM head (one matrix when tied)."""
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    def kv_bytes_per_token(self, bytes_per_value: float) -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_value


# Published config.json values and parameter counts.
KNOWN: dict[str, Architecture] = {
    "llama-2-7b": Architecture("Llama 2 7B", 6_738_415_616, 32, 4096, 32, 32, 128, 11008, 32000, False, (
        "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-chat-hf", "NousResearch/Llama-2-7b-hf",
        "NousResearch/Llama-2-7b-chat-hf")),
    "llama-2-13b": Architecture("Llama 2 13B", 13_015_864_320, 40, 5120, 40, 40, 128, 13824, 32000, False, (
        "meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-13b-chat-hf", "NousResearch/Llama-2-13b-hf",
        "NousResearch/Llama-2-13b-chat-hf")),
    "llama-2-70b": Architecture("Llama 2 70B", 68_976_648_192, 80, 8192, 64, 8, 128, 28672, 32000, False, (
        "meta-llama/Llama-2-70b-hf", "meta-llama/Llama-2-70b-chat-hf", "NousResearch/Llama-2-70b-hf",
        "NousResearch/Llama-2-70b-chat-hf")),
    "mistral-7b": Architecture("Mistral 7B", 7_241_732_096, 32, 4096, 32, 8, 128, 14336, 32000, False, (
        "mistralai/Mistral-7B-v0.1", "mistralai/Mistral-7B-Instruct-v0.1", "mistralai/Mistral-7B-Instruct-v0.2")),
    "llama-3-8b": Architecture("Llama 3 8B", 8_030_261_248, 32, 4096, 32, 8, 128, 14336, 128256, False, (
        "meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Llama-3.1-8B",
        "meta-llama/Llama-3.1-8B-Instruct")),
    "llama-3-70b": Architecture("Llama 3 70B", 70_553_706_496, 80, 8192, 64, 8, 128, 28672, 128256, False, (
        "meta-llama/Meta-Llama-3-70B", "meta-llama/Meta-Llama-3-70B-Instruct", "meta-llama/Llama-3.1-70B",
        "meta-llama/Llama-3.1-70B-Instruct")),
    "gemma-3-270m": Architecture("Gemma 3 270M", 268_098_176, 18, 640, 4, 1, 256, 2048, 262144, True, (
        "google/gemma-3-270m", "google/gemma-3-270m-it")),
    "qwen2.5-7b": Architecture("Qwen2.5 7B", 7_615_616_512, 28, 3584, 28, 4, 128, 18944, 152064, False, (
        "Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct")),
}


def estimate_parameters(arch: Architecture, experts: int = 1) -> int:
    """Parameters of a Llama-like model from its shape (biases and extra norms left out: <0.1%)."""
    h = arch.hidden_size
    attention = 2 * h * arch.attention_heads * arch.head_dim + 2 * h * arch.kv_heads * arch.head_dim
    mlp = 3 * h * arch.intermediate_size * experts  # gate, up, down
    return arch.layers * (attention + mlp + 2 * h) + arch.embedding_parameters + h


def load_config(path: Path) -> Architecture:
    """An architecture from a Hugging Face config.json (multimodal ones: its text_config)."""
    try:
        raw = json.loads(path.read_text())
        cfg = {**raw, **raw.get("text_config", {})}
        hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        arch = Architecture(
            path.parent.name or path.name, 0, int(cfg["num_hidden_layers"]), hidden, heads,
            int(cfg.get("num_key_value_heads") or heads), int(cfg.get("head_dim") or hidden // heads),
            int(cfg["intermediate_size"]), int(cfg["vocab_size"]), bool(cfg.get("tie_word_embeddings", False)))
    except (OSError, ValueError, TypeError) as exc:
        raise PlanError(f"cannot read {path}: {exc}") from None
    except KeyError as exc:
        raise PlanError(f"{path} lacks {exc.args[0]}, which a plan needs") from None
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 1)
    return replace(arch, parameters=estimate_parameters(arch, experts))


def resolve_model(model: str) -> Architecture:
    """A config.json path (or a folder holding one), or a known name or Hugging Face id."""
    path = Path(model).expanduser()
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise PlanError(f"no config.json in {model}")
    if path.is_file():
        return load_config(path)
    key = model.lower()
    for name, arch in KNOWN.items():
        if key in (name, arch.name.lower(), *(a.lower() for a in arch.aliases)):
            return arch
    raise PlanError(f"unknown model '{model}': give a Hugging Face config.json (or its folder), or one of "
                    f"{', '.join(KNOWN)} (or their Hugging Face ids, e.g. {KNOWN['llama-2-13b'].aliases[1]})")


@dataclass(frozen=True)
class Quantization:
    name: str  # as HF_MODEL_QUANTIZE, or the dtype of unquantized weights
    bits: float  # per weight of the quantized layers
    embedding_bits: float = 16.0  # the embeddings and LM head


QUANTIZATIONS: dict[str, Quantization] = {q.name: q for q in (
    Quantization("fp16", 16), Quantization("bf16", 16), Quantization("fp32", 32, 32),
    Quantization("fp8", 8), Quantization("int8", 8), Quantization("eetq", 8), Quantization("bitsandbytes", 8),
    Quantization("bitsandbytes-nf4", 4.5), Quantization("bitsandbytes-fp4", 4.5),  # fp32 absmax per 64
    Quantization("gptq", 4.25), Quantization("awq", 4.25), Quantization("marlin", 4.25),
    Quantization("q4_0", 4.5, 4.5), Quantization("q4_k_m", 4.85, 4.85), Quantization("q5_k_m", 5.69, 5.69),
    Quantization("q6_k", 6.56, 6.56), Quantization("q8_0", 8.5, 8.5),
)}
_DTYPE_NAMES = {"none": "fp16", "float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}
KV_CACHE_BYTES = {"fp16": 2, "bf16": 2, "fp8": 1, "fp8_e4m3fn": 1, "fp8_e5m2": 1}


def quantization(name: str | None) -> Quantization:
    key = (name or "fp16").lower()
    try:
        return QUANTIZATIONS[_DTYPE_NAMES.get(key, key)]
    except KeyError:
        raise PlanError(f"unknown quantization '{name}'; known: {', '.join(QUANTIZATIONS)}") from None


def weights_bytes(arch: Architecture, quant: Quantization) -> float:
    embeddings = arch.embedding_parameters
    return ((arch.parameters - embeddings) * quant.bits + embeddings * quant.embedding_bits) / 8


@dataclass(frozen=True)
class Limits:
    """TGI's settings that size a copy's KV cache and its batches."""

    max_batch_total_tokens: int = 16384
    max_total_tokens: int = 4096
    max_concurrent_requests: int = 128
    kv_cache_dtype: str = "fp16"  # KV_CACHE_DTYPE

    @property
    def kv_bytes_per_value(self) -> int:
        try:
            return KV_CACHE_BYTES[self.kv_cache_dtype]
        except KeyError:
            raise PlanError(f"unknown KV cache dtype '{self.kv_cache_dtype}'; known: "
                            f"{', '.join(KV_CACHE_BYTES)}") from None


@dataclass(frozen=True)
class Workload:
    """The requests of the roofline: P prompt tokens and G new tokens each."""

    prompt_tokens: int = 1000
    new_tokens: int = 50


@dataclass(frozen=True)
class AcceleratorSpec:
    bandwidth_gb_s: float  # memory bandwidth
    tflops: float  # dense fp16/bf16 tensor-core peak


# Keyed by resources.CATALOG's accelerator_name.
ACCELERATOR_SPECS: dict[str, AcceleratorSpec] = {
    "A100-40GB": AcceleratorSpec(1555, 312), "A100-80GB": AcceleratorSpec(2039, 312),
    "H100-80GB": AcceleratorSpec(3350, 989), "A10G": AcceleratorSpec(600, 125), "L4": AcceleratorSpec(300, 121),
}


@dataclass(frozen=True)
class Roofline:
    """One cycle of a copy: prefill of `batch` prompts, then new_tokens decode steps."""

    batch: int
    prefill_s: float
    prefill_bound: str  # compute | memory
    decode_step_s: float
    decode_bound: str
    copy_requests_per_s: float
    requests_per_s: float  # all copies on the instance


def _phase(flops: float, bytes_read: float, spec: AcceleratorSpec, n: int) -> tuple[float, str]:
    compute, memory = flops / (n * spec.tflops * 1e12), bytes_read / (n * spec.bandwidth_gb_s * 1e9)
    return (compute, "compute") if compute >= memory else (memory, "memory")


def roofline(arch: Architecture, weights: float, spec: AcceleratorSpec, n: int, copies: int, limits: Limits,
             workload: Workload) -> Roofline:
    p, g = workload.prompt_tokens, workload.new_tokens
    batch = max(1, min(limits.max_batch_total_tokens // (p + g), limits.max_concurrent_requests))
    flops_per_token = 2 * arch.parameters
    prefill, prefill_bound = _phase(flops_per_token * p * batch, weights, spec, n)
    kv_read = batch * (p + g / 2) * arch.kv_bytes_per_token(limits.kv_bytes_per_value)
    step, step_bound = _phase(flops_per_token * batch, weights + kv_read, spec, n)
    per_copy = batch / (prefill + g * step)
    return Roofline(batch, prefill, prefill_bound, step, step_bound, per_copy, per_copy * copies)


@dataclass(frozen=True)
class Plan:
    model: Architecture
    instance: InstanceType
    quantization: Quantization
    limits: Limits
    workload: Workload
    compute: ComputeRequirements  # per copy; num_accelerators 0 when the model does not fit
    weights_bytes: float
    kv_bytes: float
    usable_bytes: float  # per accelerator, after the overhead
    copies: int
    roofline: Roofline | None  # None: no fit, or no figures for the accelerator
    explanation: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.name, "parameters": self.model.parameters, "instance_type": self.instance.name,
            "quantize": self.quantization.name, "bits_per_weight": self.quantization.bits,
            "weights_gib": round(self.weights_bytes / GIB, 3), "kv_cache_gib": round(self.kv_bytes / GIB, 3),
            "max_batch_total_tokens": self.limits.max_batch_total_tokens,
            "usable_gib_per_accelerator": round(self.usable_bytes / GIB, 3),
            "accelerators_per_copy": self.compute.num_accelerators or None, "copies": self.copies,
            "cpus_per_copy": self.compute.num_cpus, "memory_mb_per_copy": self.compute.min_memory_mb,
            "roofline": asdict(self.roofline) if self.roofline else None, "workload": asdict(self.workload),
            "explanation": self.explanation, "roofline_explanation": roofline_text(self),
            "measured": measured_note(self),
        }


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _cores(n: float) -> str:
    return f"{n:g} CPU core{'' if n == 1 else 's'}"


def _instance(instance: str | InstanceType) -> InstanceType:
    try:
        t = instance_type(instance) if isinstance(instance, str) else instance
    except ValueError as exc:
        raise PlanError(str(exc)) from None
    if not t.accelerators:
        raise PlanError(f"{t.name} has no accelerators: shoal plan sizes copies on accelerators")
    return t


def _check(limits: Limits, workload: Workload) -> None:
    tokens = workload.prompt_tokens + workload.new_tokens
    if limits.max_total_tokens > limits.max_batch_total_tokens:
        raise PlanError(f"MAX_TOTAL_TOKENS ({limits.max_total_tokens}) must be <= MAX_BATCH_TOTAL_TOKENS "
                        f"({limits.max_batch_total_tokens})")
    if tokens > limits.max_total_tokens:
        raise PlanError(f"prompt + new tokens ({tokens}) must be <= MAX_TOTAL_TOKENS ({limits.max_total_tokens})")


def _need(accelerators: int, cpus: float | None, memory_mb: int | None) -> ComputeRequirements:
    """Per-copy requirements; what is not given takes ComputeRequirements' (and deploy's) defaults."""
    given = {k: v for k, v in (("num_cpus", cpus), ("min_memory_mb", memory_mb)) if v is not None}
    try:
        return ComputeRequirements(num_accelerators=accelerators, **given)
    except ValidationError as exc:
        raise PlanError(f"per-copy resources: {exc.errors()[0]['msg']}") from None


def _share(arch: Architecture, weights: float, kv: float, n: int) -> float:
    return weights / n + kv / min(n, arch.kv_heads)


def _tp_sizes(arch: Architecture, available: int) -> list[int]:
    return [n for n in TP_SIZES if n <= available and arch.attention_heads % n == 0]


def _copies_text(inst: InstanceType, need: ComputeRequirements, copies: int) -> str:
    n, by_accelerators = need.num_accelerators, inst.accelerators // need.num_accelerators
    text = f"{inst.accelerators} / {n} = {by_accelerators} cop{'y' if by_accelerators == 1 else 'ies'}"
    if copies < by_accelerators:
        text += (f", but {_cores(need.num_cpus)} and {need.min_memory_mb} MB per copy ({inst.vcpus} vCPUs, "
                 f"{inst.memory_mib} MiB) leave room for {copies}")
    return text


def _no_fit_text(inst: InstanceType, most: int, share: float) -> str:
    return (f": even {most} accelerators would need {_gib(share)} each, so it does not fit on one {inst.name}; "
            f"try a quantization (gptq, awq, fp8), a smaller MAX_BATCH_TOTAL_TOKENS or an instance type with more "
            f"accelerator memory")


def roofline_text(p: Plan) -> str:
    """The roofline's arithmetic in words."""
    r, workload, copies = p.roofline, p.workload, p.copies
    if r is None:
        return ("no roofline: it does not fit" if not copies else
                f"no roofline: no bandwidth and FLOPs figures for {p.instance.accelerator_name}")
    return (f"roofline: batches of {r.batch}; prefill {r.batch} x {workload.prompt_tokens} tokens "
            f"{r.prefill_s:.2f} s ({r.prefill_bound} bound) + {workload.new_tokens} decode steps x "
            f"{r.decode_step_s * 1000:.1f} ms ({r.decode_bound} bound) = {r.copy_requests_per_s:.2f} req/s "
            f"per copy x {copies} = {r.requests_per_s:.1f} req/s")


def plan(model: str | Architecture, instance: str | InstanceType = "ml.p4d.24xlarge", quantize: str | None = None,
         limits: Limits = Limits(), workload: Workload = Workload(), cpus: float | None = None,
         memory_mb: int | None = None) -> Plan:
    """How many copies of `model` fit one `instance`, with how many accelerators each, and why."""
    arch = model if isinstance(model, Architecture) else resolve_model(model)
    inst, quant = _instance(instance), quantization(quantize)
    _check(limits, workload)
    weights = weights_bytes(arch, quant)
    kv = limits.max_batch_total_tokens * arch.kv_bytes_per_token(limits.kv_bytes_per_value)
    usable = (inst.accelerator_memory_gib - OVERHEAD_GIB) * GIB
    sizes = _tp_sizes(arch, inst.accelerators)
    n = next((n for n in sizes if _share(arch, weights, kv, n) <= usable), None)
    why = (f"{arch.name} {quant.name}: weights {_gib(weights)} + KV {_gib(kv)} for {limits.max_batch_total_tokens} "
           f"tokens = {_gib(weights + kv)}; one {inst.accelerator_name} holds {_gib(usable)} usable "
           f"({inst.accelerator_memory_gib} GiB less {OVERHEAD_GIB:g} GiB overhead)")
    if n is None:
        why += _no_fit_text(inst, sizes[-1], _share(arch, weights, kv, sizes[-1]))
        return Plan(arch, inst, quant, limits, workload, _need(0, cpus, memory_mb), weights, kv, usable, 0, None, why)
    need = _need(n, cpus, memory_mb)
    copies = max_copies(inst, need)
    each = f" ({_gib(_share(arch, weights, kv, n))} each)" if n > 1 else ""
    why += f": {n} accelerator{'s' if n > 1 else ''} per copy{each}; {_copies_text(inst, need, copies)}"
    spec = ACCELERATOR_SPECS.get(inst.accelerator_name)
    rl = roofline(arch, weights, spec, n, copies, limits, workload) if spec and copies else None
    return Plan(arch, inst, quant, limits, workload, need, weights, kv, usable, copies, rl, why)


# -- the seed's table ---------------------------------------------------------------------------
SEED_INSTANCE = "ml.p4d.24xlarge"
SEED_CPUS, SEED_MEMORY_MB = 10.0, 100 * 1024  # its ResourceRequirements per copy
SEED_TABLE: tuple[tuple[str, str | None, int], ...] = (  # model, HF_MODEL_QUANTIZE, the seed's copies
    ("llama-2-7b", None, 8), ("llama-2-7b", "gptq", 8), ("llama-2-13b", None, 8), ("llama-2-13b", "gptq", 8),
    ("llama-2-70b", None, 2), ("llama-2-70b", "gptq", 4),
)


@dataclass(frozen=True)
class Measurement:
    model: str
    instance: str
    quantize: str
    copies: int
    limits: Limits
    workload: Workload
    requests_per_s: float
    source: str


SEED_MEASUREMENT = Measurement("llama-2-13b", SEED_INSTANCE, "fp16", 8, Limits(), Workload(1000, 50), 26.17,
                               "the seed: TGI, 8 copies, 500 concurrent users")


def seed_plans(instance: str | InstanceType = SEED_INSTANCE, limits: Limits = Limits(), workload: Workload = Workload(),
               cpus: float | None = None, memory_mb: int | None = None) -> list[Plan]:
    """The seed's table (Llama 2 7B/13B/70B, fp16 and GPTQ), by default with its per-copy resources."""
    cpus, memory_mb = cpus or SEED_CPUS, memory_mb or SEED_MEMORY_MB
    return [plan(model, instance, quantize, limits, workload, cpus, memory_mb) for model, quantize, _ in SEED_TABLE]


def measured_note(p: Plan) -> str | None:
    """The seed's measurement beside the roofline of the same setup, if this plan is that setup."""
    m = SEED_MEASUREMENT
    same = (p.model == KNOWN[m.model] and p.instance.name == m.instance and p.quantization.name == m.quantize
            and p.copies == m.copies and p.limits == m.limits and p.workload == m.workload)
    if not same or p.roofline is None:
        return None
    return (f"measured: {m.requests_per_s} req/s for {p.model.name} {m.quantize} on {m.instance} ({m.source}) "
            f"= {m.requests_per_s / p.roofline.requests_per_s:.2f} x the roofline's {p.roofline.requests_per_s:.1f}")


# -- output -------------------------------------------------------------------------------------
HEADERS = ("model", "quantize", "weights", "KV cache", "accelerators/copy", "copies", "batch", "roofline req/s")


def heading(p: Plan) -> str:
    i, lim, w = p.instance, p.limits, p.workload
    return (f"{i.name}: {i.accelerators} x {i.accelerator_name} ({_gib(p.usable_bytes)} usable each), {i.vcpus} vCPUs, "
            f"{i.memory_mib // 1024} GiB; MAX_BATCH_TOTAL_TOKENS={lim.max_batch_total_tokens}, "
            f"MAX_TOTAL_TOKENS={lim.max_total_tokens}; per copy {_cores(p.compute.num_cpus)}, "
            f"{p.compute.min_memory_mb} MB; roofline for {w.prompt_tokens} prompt + {w.new_tokens} new tokens")


def table_rows(plans: list[Plan], seed: bool = False) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the table `shoal plan` prints; with `seed`, the seed's copies too."""
    headers = [*HEADERS[:6], *(["seed's copies"] if seed else []), *HEADERS[6:]]
    rows = []
    for i, p in enumerate(plans):
        r = p.roofline
        rows.append([p.model.name, p.quantization.name, _gib(p.weights_bytes), _gib(p.kv_bytes),
                     str(p.compute.num_accelerators or "-"), str(p.copies), *([str(SEED_TABLE[i][2])] if seed else []),
                     str(r.batch) if r else "-", f"{r.requests_per_s:.1f}" if r else "-"])
    return headers, rows


def notes(plans: list[Plan]) -> list[str]:
    """The reasons under the table, the seed's measurement where it applies, and the roofline's caveat."""
    lines = [line for p in plans for line in (f"- {p.explanation}", f"  {roofline_text(p)}")]
    lines += [note for p in plans if (note := measured_note(p))]
    lines.append("roofline = an upper bound: peak fp16 FLOPs and memory bandwidth, perfect tensor parallelism; "
                 "no attention FLOPs, communication, kernel inefficiency or scheduling (see shoal/control/plan.py)")
    return lines


def as_json(plans: list[Plan], seed: bool = False) -> Any:
    if not seed:
        return plans[0].as_dict()
    return [{**p.as_dict(), "seed_copies": row[2]} for p, row in zip(plans, SEED_TABLE)]
