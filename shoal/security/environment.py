"""What a component's environment may set, and what a copy inherits.

A component's variables reach its engine process, so a caller who could set any of them could make the
process load their code (LD_PRELOAD, PYTHONPATH, GGML_BACKEND_PATH, CUDA_INJECTION64_PATH, ...), fetch
from their server (HF_ENDPOINT, HTTPS_PROXY) or reach past its slot (CUDA_VISIBLE_DEVICES). So a component
may set only the variables listed here (the engines' settings: TGI's, shoal's own, Hugging Face's model and
token variables), by their exact names; an operator who needs more starts the server with `--allow-env NAME`
(or `PREFIX*`). The list is `ALLOWED_NAMES`; README "Locking the doors" says the same.
"""
from __future__ import annotations

import re
from collections.abc import Collection, Mapping

NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")  # how an environment variable's name looks (no spaces, no `=`)
ALLOWED_NAMES = frozenset({
    # TGI's settings, as users of the Hugging Face LLM container set them (shoal.engines.base.TGI_SETTINGS)
    "MAX_INPUT_LENGTH", "MAX_INPUT_TOKENS", "MAX_TOTAL_TOKENS", "MAX_BATCH_PREFILL_TOKENS", "MAX_BATCH_TOTAL_TOKENS",
    "MAX_CONCURRENT_REQUESTS", "MAX_STOP_SEQUENCES", "MAX_BEST_OF", "MAX_TOP_N_TOKENS", "WAITING_SERVED_RATIO",
    "MAX_WAITING_TOKENS", "SM_NUM_GPUS", "NUM_SHARD", "HF_MODEL_QUANTIZE", "QUANTIZE", "CHAT_TEMPLATE",
    "MESSAGES_API_ENABLED", "DTYPE", "KV_CACHE_DTYPE", "ROPE_SCALING", "ROPE_FACTOR", "MAX_CLIENT_BATCH_SIZE",
    "CUDA_GRAPHS", "PAYLOAD_LIMIT", "PREFIX_CACHING", "ATTENTION",
    # the model and the token to fetch it (a model reference must name the component's model: shoal.engines)
    "HF_MODEL_ID", "MODEL_ID", "HF_MODEL_REVISION", "REVISION", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN",
    "HF_HUB_OFFLINE", "HF_HUB_ENABLE_HF_TRANSFER",
    # shoal's engine and routing settings
    "SHOAL_FLASH_ATTENTION", "SHOAL_CPU_EXTRA_BUFFERS", "SHOAL_PREFIX_CACHE", "SHOAL_PREFIX_CACHE_TOKENS",
    "SHOAL_PREFIX_CACHE_ENTRIES", "SHOAL_PREFIX_CACHE_BLOCK", "SHOAL_SHUTDOWN_TIMEOUT", "SHOAL_PREFIX_AFFINITY_BOUND",
    "SHOAL_ADAPTER_AFFINITY_BOUND",
    # logs and tokenizer threads
    "LOG_LEVEL", "RUST_LOG", "VLLM_LOGGING_LEVEL", "TOKENIZERS_PARALLELISM",
    # what the `sagemaker` SDK adds to every model's Environment (its inference-script names: shoal's engines
    # and the LLM servers it runs read none of them)
    "SAGEMAKER_PROGRAM", "SAGEMAKER_SUBMIT_DIRECTORY", "SAGEMAKER_CONTAINER_LOG_LEVEL", "SAGEMAKER_REGION",
    "SAGEMAKER_MODEL_SERVER_WORKERS", "SAGEMAKER_MODEL_SERVER_TIMEOUT", "HF_TASK",
})


# For the OpenAPI document: what a name may look like (which names, the server's policy decides).
SAFE_ENV_SCHEMA = {"propertyNames": {"pattern": NAME.pattern}}


def check_names(env: Mapping[str, str]) -> Mapping[str, str]:
    """`env`, or ValueError naming variables whose names no process could have."""
    if bad := sorted(name for name in env if not NAME.match(name)):
        raise ValueError(f"Environment variable names must be upper-case letters, digits and _ (not "
                         f"{', '.join(repr(b) for b in bad)})")
    return env


def refused_variables(env: Mapping[str, str], also_allowed: Collection[str] = ()) -> list[str]:
    """The names in `env` that a component may not set (`also_allowed`: the operator's names or PREFIX*)."""
    def allowed(name: str) -> bool:
        return name in ALLOWED_NAMES or any(name == a or (a.endswith("*") and name.startswith(a[:-1]))
                                            for a in also_allowed)
    return sorted(name for name in env if not allowed(name))


def check_environment(env: Mapping[str, str], also_allowed: Collection[str] = ()) -> Mapping[str, str]:
    """`env`, or ValueError naming what it may not set and why."""
    check_names(env)
    if refused := refused_variables(env, also_allowed):
        raise ValueError(f"Environment may not set {', '.join(refused)}: a component may set the engines' settings "
                         f"(TGI's, shoal's SHOAL_*, Hugging Face's model and token variables), not variables that "
                         f"could change what its process loads, runs or reaches; a server started with "
                         f"--allow-env NAME accepts more")
    return env


# Names that hold secrets, by rule (HF_TOKEN, AWS_SECRET_ACCESS_KEY, OPENAI_API_KEY, DB_PASSWORD, ...): their
# values are never shown by describe, DescribeInferenceComponent or the logs.
# A word of the name (split at `_`) says so; MAX_TOTAL_TOKENS (a count) does not, HF_TOKEN does.
_SECRET_WORDS = frozenset({"TOKEN", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS",
                           "APIKEY", "PRIVATE", "AUTHORIZATION", "COOKIE"})
_KEY_KINDS = frozenset({"API", "ACCESS", "SECRET", "PRIVATE", "AUTH", "SIGNING", "ENCRYPTION", "LICENSE"})
_KEY_WORDS = frozenset({"KEY", "KEYS"})
# The server's own settings that hold or point at its secrets: never a copy's.
SERVER_ONLY = frozenset({"SHOAL_API_KEYS", "SHOAL_API_KEYS_FILE"})
REDACTED = "***"


def looks_secret(name: str) -> bool:
    words = re.split(r"[_\-.]", name.upper())
    return bool(_SECRET_WORDS.intersection(words)) or any(
        word in _KEY_WORDS and i and words[i - 1] in _KEY_KINDS for i, word in enumerate(words))


def redacted(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with the values of secret-looking names replaced by ***."""
    return {k: REDACTED if looks_secret(k) else v for k, v in env.items()}


def copy_base_environment(server_env: Mapping[str, str]) -> dict[str, str]:
    """What a copy inherits of the server's environment, before its component's own variables: everything the
    operator set up for programs on this machine (PATH, CUDA and library paths, caches, locale) except the
    server's secrets: variables that look secret (a copy that needs a token gets it from its component's
    Environment) and the server's own key settings."""
    return {k: v for k, v in server_env.items() if k not in SERVER_ONLY and not looks_secret(k)}
