"""House rules a script can check: the import layers of ARCHITECTURE §1 and the engine's public API."""

from __future__ import annotations

import ast
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def engine_modules() -> list[Path]:
    return sorted((ROOT / "engine").rglob("*.py"))


def test_engine_never_imports_the_web_layer() -> None:
    for path in engine_modules():
        bad = {m for m in imports_of(path) if m.split(".")[0] in {"flask", "werkzeug", "marshmallow", "api"}}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_only_engine_spiff_imports_spiffworkflow() -> None:
    for path in [*engine_modules(), *sorted((ROOT / "api").rglob("*.py"))]:
        if path == ROOT / "engine" / "spiff.py":
            continue
        bad = {m for m in imports_of(path) if m.split(".")[0] == "SpiffWorkflow"}
        assert not bad, f"{path.relative_to(ROOT)} imports SpiffWorkflow"


def test_only_engine_worker_imports_celery() -> None:
    for path in [*engine_modules(), *sorted((ROOT / "api").rglob("*.py"))]:
        if (ROOT / "engine" / "worker") in path.parents:
            continue
        bad = {m for m in imports_of(path) if m.split(".")[0] == "celery"}
        assert not bad, f"{path.relative_to(ROOT)} imports celery"


def test_the_store_never_imports_the_engine_above_it() -> None:
    below = ("engine.store", "engine.errors")  # the error tree is a leaf every layer may raise
    for path in sorted((ROOT / "engine" / "store").rglob("*.py")):
        bad = {m for m in imports_of(path) if m.startswith("engine.") and not m.startswith(below)}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_every_module_opens_with_a_docstring_saying_what_it_owns() -> None:
    for path in [*engine_modules(), *sorted((ROOT / "api").rglob("*.py"))]:
        if "versions" in path.parts or (path.name == "__init__.py" and not path.read_text().strip()):
            continue
        assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), f"{path.relative_to(ROOT)}"


def test_the_public_api_is_exported_from_engine_init() -> None:
    for name in engine.__all__:
        assert hasattr(engine, name), name
    assert {"start_case", "complete_task", "claim_task", "EngineError", "Runtime"} <= set(engine.__all__)
