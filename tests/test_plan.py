"""`shoal plan` is pure arithmetic over plain data: no model is loaded, nothing is downloaded."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoal.cli import app, main
from shoal.control.plan import (
    ACCELERATOR_SPECS,
    GIB,
    KNOWN,
    Limits,
    PlanError,
    Workload,
    estimate_parameters,
    plan,
    resolve_model,
    seed_plans,
)
from shoal.control.resources import CATALOG

LLAMA_2_7B_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32, "vocab_size": 32000,
    "tie_word_embeddings": False, "torch_dtype": "float16",
}


def test_the_seed_table_on_a_p4d() -> None:
    rows = [(p.model.name, p.quantization.name, p.compute.num_accelerators, p.copies) for p in seed_plans()]
    assert rows == [
        ("Llama 2 7B", "fp16", 1, 8), ("Llama 2 7B", "gptq", 1, 8),
        ("Llama 2 13B", "fp16", 1, 8), ("Llama 2 13B", "gptq", 1, 8),
        ("Llama 2 70B", "fp16", 4, 2), ("Llama 2 70B", "gptq", 2, 4),
    ]


def test_kv_cache_and_weights_by_hand() -> None:
    p = plan("llama-2-13b")  # 2 (K, V) x 40 layers x 40 KV heads x 128 head dim x 2 bytes = 819200 bytes a token
    assert p.kv_bytes == 819_200 * 16384 == 12.5 * GIB
    assert p.weights_bytes == 2 * 13_015_864_320
    assert plan("llama-2-13b", limits=Limits(kv_cache_dtype="fp8")).kv_bytes == p.kv_bytes / 2
    seventy = plan("llama-2-70b", quantize="gptq")  # GQA: 8 KV heads; embeddings and LM head stay fp16
    assert seventy.kv_bytes == 2 * 80 * 8 * 128 * 2 * 16384 == 5 * GIB
    embeddings = 2 * 32000 * 8192
    assert seventy.weights_bytes == (68_976_648_192 - embeddings) * 4.25 / 8 + embeddings * 2
    assert "weights 34.8 GiB + KV 5.0 GiB for 16384 tokens = 39.8 GiB" in seventy.explanation
    assert "2 accelerators per copy (19.9 GiB each); 8 / 2 = 4 copies" in seventy.explanation


def test_roofline_by_hand_beside_the_seed_measurement() -> None:
    p = plan("llama-2-13b", cpus=10, memory_mb=100 * 1024)
    batch = 16384 // 1050
    prefill = 2 * 13_015_864_320 * 1000 * batch / 312e12  # compute bound
    step = (2 * 13_015_864_320 + batch * 1025 * 819_200) / 1555e9  # weights + KV read per decode step
    assert p.roofline is not None and p.roofline.batch == batch == 15
    assert p.roofline.requests_per_s == pytest.approx(8 * batch / (prefill + 50 * step))
    assert p.roofline.prefill_bound == "compute" and p.roofline.decode_bound == "memory"
    note = p.as_dict()["measured"]
    assert note.startswith("measured: 26.17 req/s for Llama 2 13B fp16 on ml.p4d.24xlarge")
    assert note.endswith(f"= {26.17 / p.roofline.requests_per_s:.2f} x the roofline's 48.1")
    assert plan("llama-2-13b", workload=Workload(500, 50)).as_dict()["measured"] is None


def test_a_local_config_json(tmp_path: Path) -> None:
    folder = tmp_path / "my-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA_2_7B_CONFIG))
    for given in (folder, folder / "config.json"):
        p = plan(str(given))
        assert p.model.name == "my-llama" and p.model.parameters == KNOWN["llama-2-7b"].parameters
        assert (p.weights_bytes, p.kv_bytes, p.copies) == (plan("llama-2-7b").weights_bytes,
                                                          plan("llama-2-7b").kv_bytes, 8)
    (folder / "config.json").write_text(json.dumps({**LLAMA_2_7B_CONFIG, "num_hidden_layers": None}))
    with pytest.raises(PlanError, match="cannot read"):
        plan(str(folder))
    no_vocab = {k: v for k, v in LLAMA_2_7B_CONFIG.items() if k != "vocab_size"}
    (folder / "config.json").write_text(json.dumps({"text_config": no_vocab}))
    with pytest.raises(PlanError, match="config.json lacks vocab_size, which a plan needs"):
        plan(str(folder))
    with pytest.raises(PlanError, match="no config.json in"):
        plan(str(tmp_path))


def test_known_models_by_alias_and_their_parameters() -> None:
    assert resolve_model("NousResearch/Llama-2-13b-chat-hf") is KNOWN["llama-2-13b"]
    assert resolve_model("META-LLAMA/LLAMA-2-70B-CHAT-HF") is KNOWN["llama-2-70b"]
    for arch in KNOWN.values():  # the published counts agree with the shapes
        assert estimate_parameters(arch) == pytest.approx(arch.parameters, rel=2e-4)
    assert {t.accelerator_name for t in CATALOG.values() if t.accelerators} <= set(ACCELERATOR_SPECS)


def test_an_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(PlanError) as err:
        plan("llama-9b")
    assert str(err.value) == (
        "unknown model 'llama-9b': give a Hugging Face config.json (or its folder), or one of llama-2-7b, "
        "llama-2-13b, llama-2-70b, mistral-7b, llama-3-8b, llama-3-70b, gemma-3-270m, qwen2.5-7b "
        "(or their Hugging Face ids, e.g. meta-llama/Llama-2-13b-chat-hf)")


def test_a_model_that_fits_nowhere_says_why() -> None:
    p = plan("llama-2-70b", "ml.g5.48xlarge", "fp32")
    assert (p.copies, p.compute.num_accelerators, p.roofline) == (0, 0, None)
    assert p.explanation == (
        "Llama 2 70B fp32: weights 257.0 GiB + KV 5.0 GiB for 16384 tokens = 262.0 GiB; one A10G holds 22.0 GiB "
        "usable (24 GiB less 2 GiB overhead): even 8 accelerators would need 32.7 GiB each, so it does not fit on "
        "one ml.g5.48xlarge; try a quantization (gptq, awq, fp8), a smaller MAX_BATCH_TOTAL_TOKENS or an instance "
        "type with more accelerator memory")


def test_cores_and_memory_bound_copies_as_placement_does() -> None:
    p = plan("llama-2-7b", cpus=16)
    assert p.copies == 6
    assert p.explanation.endswith("8 / 1 = 8 copies, but 16 CPU cores and 1024 MB per copy (96 vCPUs, "
                                  "1179648 MiB) leave room for 6")
    assert plan("mistral-7b", "ml.g5.12xlarge", "awq", memory_mb=100 * 1024).copies == 1  # 192 GiB host memory


@pytest.mark.parametrize("kwargs,message", [
    ({"instance": "ml.m5.xlarge"}, "ml.m5.xlarge has no accelerators"),
    ({"instance": "ml.nope"}, "unknown instance type 'ml.nope'"),
    ({"quantize": "gptq-3bit"}, "unknown quantization 'gptq-3bit'; known: fp16, bf16"),
    ({"limits": Limits(max_total_tokens=20000)}, r"MAX_TOTAL_TOKENS \(20000\) must be <= MAX_BATCH_TOTAL_TOKENS"),
    ({"workload": Workload(4000, 200)}, r"prompt \+ new tokens \(4200\) must be <= MAX_TOTAL_TOKENS \(4096\)"),
    ({"cpus": 1.5}, "per-copy resources: Value error, NumberOfCpuCoresRequired above 1 must be a whole number"),
])
def test_settings_that_cannot_be_planned(kwargs: dict, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan("llama-2-7b", **kwargs)


def test_cli_seed_table_and_one_model() -> None:
    runner = CliRunner()
    seed = runner.invoke(app, ["plan", "--seed"])
    assert seed.exit_code == 0, seed.output
    assert "│ Llama 2 70B │ gptq     │ 34.8 GiB  │ 5.0 GiB  │ 2                 │ 4      │ 4  " in seed.output
    assert "measured: 26.17 req/s for Llama 2 13B fp16" in seed.output
    rows = json.loads(runner.invoke(app, ["plan", "--seed", "--json"]).output)
    assert [(r["copies"], r["seed_copies"]) for r in rows] == [(8, 8), (8, 8), (8, 8), (8, 8), (2, 2), (4, 4)]
    one = runner.invoke(app, ["plan", "NousResearch/Llama-2-70b-chat-hf", "--quantize", "awq", "--json"])
    assert json.loads(one.output)["accelerators_per_copy"] == 2
    too_big = runner.invoke(app, ["plan", "llama-2-70b", "--instance-type", "ml.g5.48xlarge",
                                  "--quantize", "fp32"])
    assert too_big.exit_code == 1 and "so it does not fit on one ml.g5.48xlarge" in " ".join(too_big.output.split())
    assert runner.invoke(app, ["plan"]).exit_code == 2


def test_cli_unknown_model_is_an_error_not_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["shoal", "plan", "llama-9b"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert "error: unknown model 'llama-9b'" in capsys.readouterr().err
