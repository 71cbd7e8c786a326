"""Desired state in SQLite: endpoints and components survive a restart of the shoal server.

Copies are not stored: they are derived from each component's CopyCount and re-created on start.
Beside them: when each endpoint and component was created and last changed, with a front door's own
notes about it (SageMaker's model and variant names, ...), which leave with it; and documents that
only one front door knows (SageMaker's models and endpoint configurations).
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.control.autoscaling.policy import ScalingPolicy
from shoal.control.models import ComponentSpec, EndpointSpec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (name TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS components (name TEXT PRIMARY KEY, endpoint TEXT NOT NULL, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scaling_policies (component TEXT PRIMARY KEY, policy TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resource_meta (kind TEXT NOT NULL, name TEXT NOT NULL, created REAL NOT NULL,
                                          modified REAL NOT NULL, notes TEXT NOT NULL, PRIMARY KEY (kind, name));
CREATE TABLE IF NOT EXISTS documents (kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL,
                                      PRIMARY KEY (kind, name));
"""
ENDPOINT, COMPONENT = "endpoint", "component"  # kinds of resource_meta


def _private(path: Path) -> str:
    """The database holds components' environments (tokens among them): readable by its owner only, and its
    directory too (SQLite's -wal and -shm files beside it are created as the database is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        file.touch(mode=0o600, exist_ok=True)
        file.chmod(0o600)
    return str(path)


@dataclass(frozen=True)
class ResourceMeta:
    created: float  # epoch seconds
    modified: float
    notes: dict[str, Any]


class StateStore:
    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path) if str(path) == ":memory:" else _private(Path(path)),
                                   isolation_level=None)  # autocommit; one writer (the server)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def put_endpoint(self, spec: EndpointSpec) -> None:
        self._db.execute("INSERT OR REPLACE INTO endpoints VALUES (?, ?)", (spec.name, spec.model_dump_json()))
        self._touch(ENDPOINT, spec.name)

    def delete_endpoint(self, name: str) -> None:
        self._db.execute("DELETE FROM endpoints WHERE name = ?", (name,))
        self._db.execute("DELETE FROM resource_meta WHERE kind = ? AND name = ?", (ENDPOINT, name))

    def endpoints(self) -> list[EndpointSpec]:
        rows = self._db.execute("SELECT spec FROM endpoints ORDER BY name").fetchall()
        return [EndpointSpec.model_validate_json(r[0]) for r in rows]

    def put_component(self, spec: ComponentSpec) -> None:
        self._db.execute("INSERT OR REPLACE INTO components VALUES (?, ?, ?)",
                         (spec.name, spec.endpoint, spec.model_dump_json()))
        self._touch(COMPONENT, spec.name)

    def delete_component(self, name: str) -> None:
        self._db.execute("DELETE FROM components WHERE name = ?", (name,))
        self._db.execute("DELETE FROM resource_meta WHERE kind = ? AND name = ?", (COMPONENT, name))

    def components(self) -> list[ComponentSpec]:
        rows = self._db.execute("SELECT spec FROM components ORDER BY rowid").fetchall()
        return [ComponentSpec.model_validate_json(r[0]) for r in rows]

    # -- autoscaling: a component's bounds and scaling policies (Application Auto Scaling's target) ----------
    def put_scaling_policy(self, policy: ScalingPolicy) -> None:
        self._db.execute("INSERT OR REPLACE INTO scaling_policies VALUES (?, ?)",
                         (policy.component, policy.model_dump_json()))

    def delete_scaling_policy(self, component: str) -> None:
        self._db.execute("DELETE FROM scaling_policies WHERE component = ?", (component,))

    def scaling_policies(self) -> list[ScalingPolicy]:
        rows = self._db.execute("SELECT policy FROM scaling_policies ORDER BY rowid").fetchall()
        return [ScalingPolicy.model_validate_json(r[0]) for r in rows]

    # -- when endpoints and components were created and changed, and notes about them -----------------------
    def _touch(self, kind: str, name: str) -> None:
        now = time.time()
        self._db.execute("INSERT INTO resource_meta VALUES (?, ?, ?, ?, '{}') ON CONFLICT (kind, name) "
                         "DO UPDATE SET modified = excluded.modified", (kind, name, now, now))

    def meta(self, kind: str, name: str) -> ResourceMeta:
        """An endpoint's or component's times and notes (first seen now, if stored before times were kept)."""
        query = "SELECT created, modified, notes FROM resource_meta WHERE kind = ? AND name = ?"
        row = self._db.execute(query, (kind, name)).fetchone()
        if row is None:
            self._touch(kind, name)
            row = self._db.execute(query, (kind, name)).fetchone()
        return ResourceMeta(row[0], row[1], json.loads(row[2]))

    def note(self, kind: str, name: str, **notes: Any) -> None:
        """Add notes (JSON values) to an endpoint's or component's row."""
        merged = {**self.meta(kind, name).notes, **notes}
        self._db.execute("UPDATE resource_meta SET notes = ? WHERE kind = ? AND name = ?",
                         (json.dumps(merged), kind, name))

    # -- documents: what one front door alone keeps (JSON, by kind and name) ----------------------------------
    def put_document(self, kind: str, name: str, body: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO documents VALUES (?, ?, ?)", (kind, name, body))

    def document(self, kind: str, name: str) -> str | None:
        row = self._db.execute("SELECT body FROM documents WHERE kind = ? AND name = ?", (kind, name)).fetchone()
        return row[0] if row else None

    def documents(self, kind: str) -> list[str]:
        rows = self._db.execute("SELECT body FROM documents WHERE kind = ? ORDER BY rowid", (kind,)).fetchall()
        return [r[0] for r in rows]

    def delete_document(self, kind: str, name: str) -> bool:
        cursor = self._db.execute("DELETE FROM documents WHERE kind = ? AND name = ?", (kind, name))
        return cursor.rowcount > 0

    def close(self) -> None:
        self._db.close()
