"""The LoRA adapters an engine serves beside its base model, by name.

llama.cpp applies adapters to a whole context (`llama_set_adapters_lora`), so one forward pass runs one
adapter (or none); the scheduler groups the running sequences by adapter and picks a group per step
(shoal.engine.scheduler). Adapters load on a worker thread while the model thread keeps decoding; llama.cpp
lists a model's adapters in a set that the model thread reads only when it re-plans its graph (after a
switch), so loading, freeing and the first step after a switch take `lock` and nothing else waits for it.
An adapter that leaves is freed on the model thread once no sequence uses it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Generic, Protocol, TypeVar

from shoal.engine import metrics
from shoal.errors import ConfigError, validation_error

log = logging.getLogger(__name__)
_serials = count(1)
K = TypeVar("K")


class LoraRunner(Protocol):
    def load_adapter(self, path: str) -> Any: ...

    def free_adapter(self, handle: Any) -> None: ...


@dataclass(eq=False)
class Adapter:
    name: str
    path: str
    handle: Any  # the runner's loaded adapter
    size_bytes: int
    serial: int = field(default_factory=lambda: next(_serials))  # prefix-cache namespace: a reload is new
    leaving: bool = False  # no new request may use it
    freed: bool = False  # its weights are gone (model thread only)


def parse_adapter_list(text: str) -> list[tuple[str, str]]:
    """`name=path;name=path` (SHOAL_LORA_ADAPTERS) as pairs."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, path = part.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(f"SHOAL_LORA_ADAPTERS: {part!r} is not name=path")
        pairs.append((name.strip(), path.strip()))
    return pairs


class Adapters:
    """Name -> loaded adapter. The event loop reads and replaces the table; the model thread frees."""

    def __init__(self, runner: LoraRunner) -> None:
        self.runner = runner
        self.lock = threading.Lock()  # llama.cpp's adapter set: loading, freeing, re-planning the graph
        self.by_name: dict[str, Adapter] = {}
        self.leaving: list[Adapter] = []  # taken by the model thread (Scheduler._free_left_adapters)
        self._leaving_lock = threading.Lock()
        self._changing = asyncio.Lock()  # one replacement at a time (binds to the loop on first use)

    def get(self, name: str, field_name: str) -> Adapter:
        """The adapter a request names, or a 422 that names the field and what is loaded."""
        adapter = self.by_name.get(name)
        if adapter is None:
            loaded = ", ".join(sorted(self.by_name)) or "none"
            raise validation_error(f"{field_name}: adapter `{name}` is not loaded on this engine (loaded: {loaded})")
        return adapter

    def load_now(self, pairs: list[tuple[str, str]]) -> None:
        """Load adapters before serving (at engine start)."""
        for name, path in pairs:
            self.by_name[name] = self._load(name, path)

    async def replace(self, pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
        """Serve exactly `pairs`: load the new ones off the event loop (requests keep running), then swap
        the table; adapters no longer named leave (freed once unused). What was loaded and what left."""
        async with self._changing:
            wanted = dict(pairs)
            keep = {n: a for n, a in self.by_name.items() if wanted.get(n) == a.path}
            fresh = {}
            try:
                for name, path in wanted.items():
                    if name not in keep:
                        fresh[name] = await asyncio.to_thread(self._load, name, path)
            except ConfigError:
                self._retire(list(fresh.values()))
                raise
            gone = [a for n, a in self.by_name.items() if n not in keep]
            self.by_name = {n: keep.get(n) or fresh[n] for n in wanted}
            self._retire(gone)
            return {"loaded": sorted(fresh), "removed": sorted(a.name for a in gone)}

    def _load(self, name: str, path: str) -> Adapter:
        if not os.path.isfile(path):
            raise ConfigError(f"adapter {name}: no file at {path}")
        with self.lock:
            handle = self.runner.load_adapter(path)
        size = os.path.getsize(path)
        log.info("loaded LoRA adapter %s (%s, %.1f MB)", name, path, size / 1e6)
        metrics.ADAPTERS_LOADED.inc()
        return Adapter(name, path, handle, size)

    def _retire(self, adapters: list[Adapter]) -> None:
        for adapter in adapters:
            adapter.leaving = True
        with self._leaving_lock:
            self.leaving.extend(adapters)

    def take_leaving(self) -> list[Adapter]:
        with self._leaving_lock:
            out, self.leaving = self.leaving, []
        return out

    def free(self, adapter: Adapter) -> None:
        """Free a left adapter's weights (model thread, once no sequence uses it)."""
        with self.lock:
            self.runner.free_adapter(adapter.handle)
        adapter.freed = True
        metrics.ADAPTERS_LOADED.dec()
        log.info("freed LoRA adapter %s", adapter.name)

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": a.name, "path": a.path, "size_bytes": a.size_bytes} for a in self.by_name.values()]



class Turns(Generic[K]):
    """Which group of sequences (one per adapter) the next step runs: the one with the most sequences times
    the steps it has waited, a group new to the batch having waited one. Groups share steps in proportion to
    their sizes (equal groups alternate), and a group waits at most about as many steps as the largest group
    has sequences over its own: none starves."""

    def __init__(self) -> None:
        self._last_ran: dict[K, int] = {}
        self._steps = 0

    def choose(self, sizes: dict[K, int]) -> K:
        self._last_ran = {k: self._last_ran.get(k, self._steps - 1) for k in sizes}  # forget groups that left
        return max(sizes, key=lambda k: sizes[k] * (self._steps - self._last_ran[k]))

    def ran(self, key: K) -> None:
        self._last_ran[key] = self._steps
        self._steps += 1
