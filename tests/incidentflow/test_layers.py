"""The runtime package holds the runtime: nothing under incidentflow/ (nor contracts/) imports
the services or the tools around them; the tools and the services may import the runtime."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def imported_packages(package: str) -> dict[str, set[str]]:
    """Module path → the top-level packages it imports (``import x.y``, ``from x.y import z``)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO_ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("incidentflow", {"services", "incidentflow_tools", "tests", "scripts"}),
        ("contracts", {"services", "incidentflow", "incidentflow_tools", "tests", "scripts"}),
        ("services", {"incidentflow_tools", "tests", "scripts"}),
    ],
)
def test_no_module_imports_a_layer_above_its_own(package: str, forbidden: set[str]) -> None:
    modules = imported_packages(package)
    assert len(modules) >= 4  # the scan found the package
    offending = {
        module: names & forbidden for module, names in modules.items() if names & forbidden
    }
    assert offending == {}


def test_the_scan_sees_imports_inside_functions() -> None:
    """Guards the guard: the tools' CLI imports service modules, some inside functions."""
    assert "services" in imported_packages("incidentflow_tools")["incidentflow_tools/cli.py"]
