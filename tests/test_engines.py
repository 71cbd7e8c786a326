"""Engine kinds: the command lines and environments their recipes produce, what they refuse at deploy,
and the CPU-buffer policy. vLLM, SGLang and TGI cannot run on this machine (no GPU): their tests check
the command lines only, and say so."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shoal.engines import ENGINES, Deployment, EngineConfigError, engine_kind
from shoal.engines.base import ServerPolicy
from shoal.hardware import ExtraBuffers, use_extra_buffers
from shoal.launch import LaunchPlan, Slot
from shoal.models.registry import resolve
from shoal.runtime.base import describe_exit, log_tail

SEED_ENV = {"HF_MODEL_ID": "meta-llama/Llama-2-13b-chat-hf", "SM_NUM_GPUS": "1", "MAX_TOTAL_TOKENS": "4096",
            "MAX_BATCH_TOTAL_TOKENS": "16384", "HUGGING_FACE_HUB_TOKEN": "hf_secret"}
GPU_SLOT = Slot(0, (3,), tuple(range(10, 20)), 10.0, 102400)
CPU_SLOT = Slot(0, (), (0, 1), 2.0, 1024)


def plan(engine: str, model: str, env: dict[str, str], slot: Slot = GPU_SLOT, **options: str) -> LaunchPlan:
    d = Deployment("llama", model, env, len(slot.accelerators), options)
    kind = engine_kind(engine)
    kind.check(d, ServerPolicy(allow_command_engine=True))
    return kind.launch_plan(d, slot)


def flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_builtin_engine_gets_the_component_env_and_its_slot() -> None:
    p = plan("shoal", "gemma-3-270m", {"MAX_TOTAL_TOKENS": "1024"}, CPU_SLOT)
    assert p.argv[:4] == (sys.executable, "-m", "shoal.cli", "engine")
    argv, env = p.render("127.0.0.1", 9000)
    assert argv[-4:] == ["--host", "127.0.0.1", "--port", "9000"]
    assert env["HF_MODEL_ID"] == "gemma-3-270m" and env["SHOAL_NUM_THREADS"] == "2"
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["MAX_TOTAL_TOKENS"] == "1024"


def test_llama_server_slots_hold_max_total_tokens_each() -> None:
    p = plan("llama-server", "gemma-3-270m", {"MAX_TOTAL_TOKENS": "1024", "MAX_BATCH_TOTAL_TOKENS": "4096",
                                              "MAX_BATCH_PREFILL_TOKENS": "512"}, CPU_SLOT)
    assert p.argv[1:3] == ("-m", "shoal.engines.xllamacpp_server")
    assert flag(p.argv, "--parallel") == "4" and flag(p.argv, "--ctx-size") == "4096"
    assert flag(p.argv, "--threads") == "2" and flag(p.argv, "--batch-size") == "512"
    assert flag(p.argv, "--model") == str(resolve("gemma-3-270m")) and flag(p.argv, "--alias") == "llama"
    assert flag(p.argv, "--n-gpu-layers") == "0"


def test_llama_server_leaves_extra_cpu_buffers_off_when_told() -> None:
    on = plan("llama-server", "gemma-3-270m", {"SHOAL_CPU_EXTRA_BUFFERS": "on"}, CPU_SLOT)
    off = plan("llama-server", "gemma-3-270m", {"SHOAL_CPU_EXTRA_BUFFERS": "off"}, CPU_SLOT)
    assert "--no-repack" not in on.argv and "--no-repack" in off.argv


def test_vllm_command_line_for_the_seed_config_no_gpu_here() -> None:
    env = {**SEED_ENV, "HF_MODEL_QUANTIZE": "gptq", "MAX_CONCURRENT_REQUESTS": "64", "MAX_BATCH_PREFILL_TOKENS": "8192"}
    p = plan("vllm", SEED_ENV["HF_MODEL_ID"], env)
    assert p.argv[1:3] == ("serve", "meta-llama/Llama-2-13b-chat-hf")
    assert flag(p.argv, "--max-model-len") == "4096" and flag(p.argv, "--tensor-parallel-size") == "1"
    assert flag(p.argv, "--num-gpu-blocks-override") == "1024" and flag(p.argv, "--block-size") == "16"
    assert flag(p.argv, "--max-num-batched-tokens") == "8192" and flag(p.argv, "--max-num-seqs") == "64"
    assert flag(p.argv, "--quantization") == "gptq" and "--enable-prefix-caching" in p.argv
    assert flag(p.argv, "--served-model-name") == "llama"
    assert p.env["CUDA_VISIBLE_DEVICES"] == "3" and p.env["HUGGING_FACE_HUB_TOKEN"] == "hf_secret"
    assert "MAX_TOTAL_TOKENS" not in p.env  # translated to flags, not left for vLLM to ignore


def test_vllm_sizes_its_own_kv_cache_unless_max_batch_total_tokens_is_set_no_gpu_here() -> None:
    p = plan("vllm", "org/model", {"MAX_TOTAL_TOKENS": "4096"})
    assert "--num-gpu-blocks-override" not in p.argv


def test_sglang_command_line_no_gpu_here() -> None:
    p = plan("sglang", "org/model", {**SEED_ENV, "HF_MODEL_ID": "org/model", "HF_MODEL_QUANTIZE": "awq",
                                     "MAX_BATCH_PREFILL_TOKENS": "4096"})
    assert p.argv[1:3] == ("-m", "sglang.launch_server")
    assert flag(p.argv, "--context-length") == "4096" and flag(p.argv, "--max-total-tokens") == "16384"
    assert flag(p.argv, "--max-prefill-tokens") == "4096" and flag(p.argv, "--tp-size") == "1"
    assert flag(p.argv, "--quantization") == "awq" and flag(p.argv, "--model-path") == "org/model"
    with pytest.raises(EngineConfigError, match="HF_MODEL_ID='meta-llama/Llama-2-13b-chat-hf' names another model"):
        plan("sglang", "org/model", SEED_ENV)  # the model an engine would load is the one that was checked


def test_tgi_command_line_passes_tgi_settings_through_no_gpu_here() -> None:
    env = {**SEED_ENV, "MAX_INPUT_LENGTH": "2048", "HF_MODEL_QUANTIZE": "gptq"}
    p = plan("tgi", SEED_ENV["HF_MODEL_ID"], env, Slot(0, (2, 3), (0,), 1.0, 1024))
    assert flag(p.argv, "--model-id") == SEED_ENV["HF_MODEL_ID"] and flag(p.argv, "--num-shard") == "1"
    assert p.env["MAX_INPUT_LENGTH"] == "2048" and p.env["QUANTIZE"] == "gptq"
    assert p.env["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_command_engine_fills_its_template() -> None:
    p = plan("command", "my-model", {"X": "1"}, GPU_SLOT,
             command="my-server --host {host} --port {port} --model {model} -t {threads} --gpus {accelerators}")
    argv, env = p.render("0.0.0.0", 81)
    assert argv == ["my-server", "--host", "0.0.0.0", "--port", "81", "--model", "my-model", "-t", "10",
                    "--gpus", "3"]
    assert env["HF_MODEL_ID"] == "my-model" and env["X"] == "1"
    with pytest.raises(EngineConfigError, match=r"must pass \{port\}"):
        plan("command", "m", {}, command="my-server")
    with pytest.raises(EngineConfigError, match="EngineProtocol must be tgi or openai"):
        plan("command", "m", {}, command="my-server {port}", protocol="grpc")
    with pytest.raises(EngineConfigError, match="off unless the server is started with --allow-command-engine"):
        engine_kind("command").check(Deployment("c", "m", {}, 0, {"command": "my-server {port}"}))
    with pytest.raises(EngineConfigError, match="engine vllm takes no option command"):
        plan("vllm", "org/model", {}, command="my-server {port}")


@pytest.mark.parametrize(("engine", "setting", "why"), [
    ("vllm", "MAX_INPUT_LENGTH", "prompt + new tokens"),
    ("sglang", "WAITING_SERVED_RATIO", "TGI scheduler setting"),
    ("llama-server", "HF_MODEL_QUANTIZE", "quantized when it is made"),
    ("tgi", "CHAT_TEMPLATE", "tokenizer_config.json"),
])
def test_settings_an_engine_cannot_honour_are_refused_by_name(engine: str, setting: str, why: str) -> None:
    model = "gemma-3-270m" if engine == "llama-server" else "org/model"
    with pytest.raises(EngineConfigError, match=f"engine {engine} cannot honour {setting}") as err:
        plan(engine, model, {setting: "1", "MAX_TOTAL_TOKENS": "4096"})
    assert why in str(err.value)


def test_aliases_and_tgi_startup_checks_apply_to_every_engine() -> None:
    for engine in ("vllm", "sglang", "tgi"):
        with pytest.raises(EngineConfigError, match="MAX_TOTAL_TOKENS must be <= MAX_BATCH_TOTAL_TOKENS"):
            plan(engine, "org/model", {"MAX_TOTAL_TOKENS": "8192", "MAX_BATCH_TOTAL_TOKENS": "4096"})
        with pytest.raises(EngineConfigError, match="NUM_SHARD|SM_NUM_GPUS=4 but each copy has 1"):
            plan(engine, "org/model", {"NUM_SHARD": "4"})
    with pytest.raises(EngineConfigError, match="must be a whole number"):
        plan("vllm", "org/model", {"MAX_TOTAL_TOKENS": "lots"})


def test_model_references_for_hub_engines() -> None:
    with pytest.raises(EngineConfigError, match="outside the server's model directories"):
        plan("vllm", "/models/missing", {})  # refused before anything is read: it may or may not exist
    with pytest.raises(EngineConfigError, match="no such file or directory"):
        plan("vllm", str(Path.home() / ".shoal" / "models" / "missing"), {})
    with pytest.raises(EngineConfigError, match="neither a local path nor a Hugging Face model id"):
        plan("vllm", "not a model id!", {})


def test_every_engine_kind_is_registered_once() -> None:
    assert list(ENGINES) == ["shoal", "llama-server", "vllm", "sglang", "tgi", "command"]


@pytest.mark.parametrize(("setting", "flags", "expected"), [
    (ExtraBuffers.AUTO, frozenset({"avx2", "avx512f", "amx_tile", "amx_int8"}), False),  # llama.cpp #20824
    (ExtraBuffers.AUTO, frozenset({"avx2", "avx512f"}), False),  # measured no faster there
    (ExtraBuffers.AUTO, frozenset({"avx2", "fma"}), False),  # measured no faster (slower decode) there too
    (ExtraBuffers.ON, frozenset({"amx_int8"}), True),
    (ExtraBuffers.OFF, frozenset({"avx2"}), False),
])
def test_extra_cpu_buffers_are_off_unless_asked(setting: ExtraBuffers, flags: frozenset[str],
                                                           expected: bool) -> None:
    assert use_extra_buffers(setting, flags) is expected


def test_exit_descriptions_and_log_tails(tmp_path: Path) -> None:
    assert describe_exit(-11) == "killed by signal 11 (SIGSEGV: Segmentation fault)"
    assert describe_exit(2) == "exited with code 2"
    log = tmp_path / "copy.log"
    log.write_text("one\n\x1b[31mtwo\x1b[0m\n\n" + "\n".join(f"line {i}" for i in range(10)) + "\n")
    assert log_tail(log, lines=3) == ["line 7", "line 8", "line 9"]
    assert log_tail(log, lines=12)[1] == "two"
    assert log_tail(tmp_path / "missing.log") == []
