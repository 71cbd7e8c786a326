"""What `pip install -e .` alone installs is enough for every module the server and CLI import.

The test venv has every extra, so importing cannot catch a core module that needs an extra's package
(it happened: botocore came only with `test`, and the README's first command died at import). This
reads each module's import statements instead and checks the distributions they need against the
core dependencies in pyproject.toml.
"""
from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "shoal"
# Modules that belong to an optional extra: only ever imported lazily, when that extra is asked for.
OPTIONAL_MODULES = {"shoal.runtime.ray_runtime": "ray"}


def _core_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_normal(Requirement(r).name) for r in project["dependencies"]}


def _extra_distributions(extra: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_normal(Requirement(r).name) for r in project["optional-dependencies"][extra]}


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def _module_level_imports(path: Path) -> set[str]:
    """Top-level names imported when the module is imported (not inside functions: those are lazy)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def test_every_module_level_import_is_a_core_dependency() -> None:
    core = _core_distributions()
    providers = importlib.metadata.packages_distributions()
    missing = []
    for module, path in sorted(_modules().items()):
        allowed = core | (_extra_distributions(OPTIONAL_MODULES[module]) if module in OPTIONAL_MODULES else set())
        for name in sorted(_module_level_imports(path)):
            if name in sys.stdlib_module_names or name == "shoal" or name == "__future__":
                continue
            dists = {_normal(d) for d in providers.get(name, [])}
            assert dists, f"{module} imports {name!r}, which no installed distribution provides"
            if not dists & allowed:
                missing.append(f"{module} imports {name} ({', '.join(sorted(dists))})")
    assert not missing, "not in pyproject's core dependencies:\n" + "\n".join(missing)


def test_optional_modules_are_imported_lazily() -> None:
    """A module that needs an extra is never imported at module level by another module."""
    for module, path in _modules().items():
        tree = ast.parse(path.read_text())
        top = {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
        top |= {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        assert not top & OPTIONAL_MODULES.keys(), f"{module} imports an optional module at module level"


# Which of shoal's packages each package may import (docs/architecture.md, "Dependencies point downward").
NEUTRAL = {"shoal.errors", "shoal.http", "shoal.hardware", "shoal.protocol", "shoal.launch", "shoal.models",
           "shoal.tracing"}
MAY_IMPORT = {
    "shoal.protocol": {"shoal.errors"},
    "shoal.launch": set(),
    "shoal.engine": NEUTRAL | {"shoal.observability.tokens"},  # a stream's token counts, for the gateway
    "shoal.engines": NEUTRAL | {"shoal.engine.settings",  # the built-in kind checks its engine's settings
                                "shoal.security.environment"},  # what a component's environment may set
    "shoal.runtime": NEUTRAL | {"shoal.security.environment"},  # what a copy may inherit
    "shoal.gateway": NEUTRAL | {"shoal.engines", "shoal.apidoc", "shoal.security",
                                "shoal.observability.hooks", "shoal.observability.tokens"},  # its record, token counts
    "shoal.observability": {"shoal.errors", "shoal.http", "shoal.protocol"},
    # the web console sits beside the server: it reads the control plane, the gateway's view and the runtimes
    "shoal.webconsole": NEUTRAL | {"shoal.apidoc", "shoal.control", "shoal.gateway", "shoal.engines", "shoal.runtime",
                                   "shoal.security"},
}


def _shoal_imports(path: Path) -> set[str]:
    """Every shoal module a file imports, at any depth (lazy imports break layering too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("shoal.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("shoal."):
            names.add(node.module)  # type: ignore[arg-type]
    return names


def test_packages_import_only_the_packages_below_them() -> None:
    broken = []
    for module, path in sorted(_modules().items()):
        package = next((p for p in MAY_IMPORT if module == p or module.startswith(p + ".")), None)
        if package is None:
            continue
        for name in sorted(_shoal_imports(path)):
            allowed = MAY_IMPORT[package] | {package}
            if not any(name == a or name.startswith(a + ".") for a in allowed):
                broken.append(f"{module} imports {name}")
    assert not broken, "imports against docs/architecture.md's layering:\n" + "\n".join(broken)
