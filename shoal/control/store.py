"""Desired state in SQLite: endpoints and components survive a restart of the shoal server.

Copies are not stored: they are derived from each component's CopyCount and re-created on start.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from shoal.control.autoscaling.policy import ScalingPolicy
from shoal.control.models import ComponentSpec, EndpointSpec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (name TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS components (name TEXT PRIMARY KEY, endpoint TEXT NOT NULL, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scaling_policies (component TEXT PRIMARY KEY, policy TEXT NOT NULL);
"""


class StateStore:
    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)  # autocommit; one writer (the server)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def put_endpoint(self, spec: EndpointSpec) -> None:
        self._db.execute("INSERT OR REPLACE INTO endpoints VALUES (?, ?)", (spec.name, spec.model_dump_json()))

    def delete_endpoint(self, name: str) -> None:
        self._db.execute("DELETE FROM endpoints WHERE name = ?", (name,))

    def endpoints(self) -> list[EndpointSpec]:
        rows = self._db.execute("SELECT spec FROM endpoints ORDER BY name").fetchall()
        return [EndpointSpec.model_validate_json(r[0]) for r in rows]

    def put_component(self, spec: ComponentSpec) -> None:
        self._db.execute("INSERT OR REPLACE INTO components VALUES (?, ?, ?)",
                         (spec.name, spec.endpoint, spec.model_dump_json()))

    def delete_component(self, name: str) -> None:
        self._db.execute("DELETE FROM components WHERE name = ?", (name,))

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

    def close(self) -> None:
        self._db.close()
