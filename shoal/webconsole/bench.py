"""`shoal bench` results the server can show: `results.json` files (the JSON `shoal bench` writes, with its
`meta` and `points`) under the folders the server was given, found by name only: nothing else is read, and
a result is fetched by the id the listing gave it, never by a path the caller sends."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = "results.json"
MAX_DEPTH = 4  # folders below each root
MAX_FILES = 200
MAX_BYTES = 32 << 20


@dataclass(frozen=True)
class BenchResult:
    id: str
    path: Path
    label: str  # the path below its root
    modified: float


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    base = len(root.parts)
    for folder, subfolders, files in os.walk(root):
        depth = len(Path(folder).parts) - base
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".")) if depth < MAX_DEPTH else []
        if RESULTS in files:
            found.append(Path(folder) / RESULTS)
        if len(found) >= MAX_FILES:
            break
    return found


def find(roots: tuple[Path, ...]) -> list[BenchResult]:
    """Results under `roots`, newest first."""
    results = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in _walk(root):
            try:
                modified = path.stat().st_mtime
            except OSError:
                continue
            key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
            label = f"{root.name}/{path.parent.relative_to(root)}".rstrip("/.")
            results.append(BenchResult(key, path, label, modified))
    return sorted(results, key=lambda r: -r.modified)[:MAX_FILES]


def load(result: BenchResult) -> dict[str, Any] | None:
    """The file's JSON if it is a `shoal bench` result (an object with a list of points), else None."""
    try:
        if result.path.stat().st_size > MAX_BYTES:
            return None
        data = json.loads(result.path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        return None
    return data
