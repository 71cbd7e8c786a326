"""Startup checks, the model registry and chat templates (no server needed)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shoal.engine.settings import EngineSettings
from shoal.errors import ApiError, ConfigError, ModelNotFoundError
from shoal.models import chat
from shoal.models.registry import canonical_name, resolve


def test_tgi_env_names_and_defaults() -> None:
    s = EngineSettings.build({"MAX_INPUT_TOKENS": "100", "MAX_TOTAL_TOKENS": "200",
                              "MAX_BATCH_TOTAL_TOKENS": "1000", "HF_MODEL_ID": "gemma-3-270m"})
    assert (s.max_input_length, s.max_total_tokens, s.max_batch_total_tokens) == (100, 200, 1000)
    assert s.max_batch_prefill_tokens == 150  # TGI: max_input_length + 50
    assert s.max_concurrent_requests == 128 and s.max_stop_sequences == 4
    flagged = EngineSettings.build({"MAX_TOTAL_TOKENS": "300"}, max_total_tokens=400)
    assert (flagged.max_total_tokens, flagged.max_input_length) == (400, 399)  # a flag wins; input follows
    big = EngineSettings.build({"MAX_TOTAL_TOKENS": "32768"})
    assert (big.max_input_length, big.max_batch_total_tokens) == (1024, 32768)


@pytest.mark.parametrize("env,message", [
    ({"MAX_INPUT_LENGTH": "2048", "MAX_TOTAL_TOKENS": "2048"}, "`max_input_length` must be < `max_total_tokens`"),
    ({"MAX_INPUT_LENGTH": "100", "MAX_BATCH_PREFILL_TOKENS": "50"},
     "`max_batch_prefill_tokens` must be >= `max_input_length`"),
    ({"MAX_TOTAL_TOKENS": "4096", "MAX_BATCH_TOTAL_TOKENS": "2048"},
     "`max_total_tokens` must be <= `max_batch_total_tokens`"),
    ({"MAX_TOTAL_TOKENS": "lots"}, "max_total_tokens"),
])
def test_startup_checks(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("`", ".")):
        EngineSettings.build(env)


def test_engine_refuses_bad_settings_with_a_clear_message() -> None:
    proc = subprocess.run([sys.executable, "-m", "shoal.cli", "engine", "--max-total-tokens", "100",
                           "--max-input-length", "200"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "`max_input_length` must be < `max_total_tokens`" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_secrets_are_not_echoed() -> None:
    proc = subprocess.run([sys.executable, "-m", "shoal.cli", "engine", "--model", "meta-llama/Llama-2-7b-hf"],
                          capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "HF_TOKEN": "hf_supersecret"})
    assert proc.returncode == 2
    assert "not on this machine" in proc.stderr and "hf_supersecret" not in proc.stderr + proc.stdout


def test_registry_resolves_names_aliases_and_paths(tmp_path: Path) -> None:
    path = resolve("gemma-3-270m")
    assert path.suffix == ".gguf" and path.stat().st_size > 200_000_000
    assert resolve("google/gemma-3-270m") == path
    assert resolve(str(path)) == path
    assert canonical_name("GOOGLE/GEMMA-3-270M") == "gemma-3-270m"
    assert canonical_name(str(path)) == path.stem


def test_registry_fails_fast_without_network(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not download weights"):
        resolve("meta-llama/Llama-2-7b-hf")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="not a GGUF file"):
        resolve(str(tmp_path / "weights.bin"))
    (tmp_path / "fake.gguf").write_bytes(b"PK\x03\x04 a zip, not weights")  # the name is not enough
    with pytest.raises(ModelNotFoundError, match="not a GGUF file"):
        resolve(str(tmp_path / "fake.gguf"))


def test_gemma_template_renders_turns() -> None:
    text = chat.render(chat.default_template("gemma3"), [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}], "<bos>", "<eos>")
    assert text == ("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!"
                    "<end_of_turn>\n<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n")


def test_other_families_get_chatml_and_templates_can_be_overridden(tmp_path: Path) -> None:
    assert "<|im_start|>" in chat.render(chat.default_template("llama"), [{"role": "user", "content": "x"}],
                                         "<s>", "</s>")
    custom = tmp_path / "t.jinja"
    custom.write_text("{% for m in messages %}[{{ m['content'] }}]{% endfor %}")
    assert chat.render(chat.load_template(str(custom)), [{"role": "user", "content": "x"}], "", "") == "[x]"
    with pytest.raises(ApiError, match="Template error"):
        chat.render("{{ raise_exception('no system role') }}", [], "", "")
