"""Environment variables a component may not set: they change what a process loads or runs, so a caller
who sets them could run their own code inside a copy (LD_PRELOAD, PYTHONPATH, ...), or reach past the
copy's slot (CUDA_VISIBLE_DEVICES, which shoal sets from the accelerators it placed)."""
from __future__ import annotations

import re
from collections.abc import Mapping

REFUSED_NAMES = frozenset({
    "PATH", "IFS", "BASH_ENV", "ENV", "SHELLOPTS", "PS4", "GLIBC_TUNABLES", "GCONV_PATH", "LOCPATH", "NLSPATH",
    "HOSTALIASES", "RESOLV_HOST_CONF", "PERL5LIB", "PERL5OPT", "PERLLIB", "RUBYLIB", "RUBYOPT", "NODE_OPTIONS",
    "NODE_PATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH", "OPENSSL_CONF",
    "OPENSSL_ENGINES", "CUDA_VISIBLE_DEVICES", "GIT_SSH_COMMAND", "BROWSER", "EDITOR", "PAGER",
})
REFUSED_PREFIXES = ("LD_", "DYLD_", "PYTHON", "MALLOC_")


# For the OpenAPI document: the variable names a component may not set.
SAFE_ENV_SCHEMA = {"propertyNames": {"not": {"anyOf": [
    {"enum": sorted(REFUSED_NAMES)}, {"pattern": "^(" + "|".join(REFUSED_PREFIXES) + ")"}]}}}


def refused_variables(env: Mapping[str, str]) -> list[str]:
    """The names in `env` that a component may not set."""
    return sorted(name for name in env
                  if name.upper() in REFUSED_NAMES or name.upper().startswith(REFUSED_PREFIXES))


def check_environment(env: Mapping[str, str]) -> Mapping[str, str]:
    """`env`, or ValueError naming what it may not set and why."""
    if refused := refused_variables(env):
        raise ValueError(f"Environment may not set {', '.join(refused)}: these variables change what the engine "
                         f"process loads or runs (or the devices shoal gave it)")
    return env


# Names that hold secrets, by rule (HF_TOKEN, AWS_SECRET_ACCESS_KEY, OPENAI_API_KEY, DB_PASSWORD, ...): their
# values are never shown by describe, DescribeInferenceComponent or the logs.
# A word of the name (split at `_`) says so; MAX_TOTAL_TOKENS (a count) does not, HF_TOKEN does.
_SECRET_WORDS = frozenset({"TOKEN", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS",
                           "APIKEY", "PRIVATE", "AUTHORIZATION", "COOKIE"})
_KEY_KINDS = frozenset({"API", "ACCESS", "SECRET", "PRIVATE", "AUTH", "SIGNING", "ENCRYPTION", "LICENSE"})
REDACTED = "***"


def looks_secret(name: str) -> bool:
    words = re.split(r"[_\-.]", name.upper())
    return bool(_SECRET_WORDS.intersection(words)) or any(
        word == "KEY" and i and words[i - 1] in _KEY_KINDS for i, word in enumerate(words))


def redacted(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with the values of secret-looking names replaced by ***."""
    return {k: REDACTED if looks_secret(k) else v for k, v in env.items()}
