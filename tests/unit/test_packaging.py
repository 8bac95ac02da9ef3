"""The four flat import packages belong to this distribution, and only import downwards."""

import ast
import importlib.metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = ["worker", "adapters", "statemachine", "schemas"]


@pytest.mark.parametrize("package", LAYERS)
def test_import_name_belongs_to_jobmanager(package: str) -> None:
    """Each import name resolves to the installed ``jobmanager`` distribution, not a namesake."""
    # An editable install can list the same distribution twice (egg-info beside dist-info).
    assert set(importlib.metadata.packages_distributions()[package]) == {"jobmanager"}


def test_console_script_is_declared() -> None:
    """``jobmanager`` is a console script of the distribution."""
    scripts = importlib.metadata.distribution("jobmanager").entry_points.select(
        group="console_scripts"
    )
    assert {ep.name: ep.value for ep in scripts}["jobmanager"] == "worker.cli:app"


def _imported_layers(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in LAYERS)
    return found


@pytest.mark.parametrize("package", LAYERS)
def test_imports_only_point_down(package: str) -> None:
    """worker -> adapters -> statemachine -> schemas: no package imports one above it."""
    above = set(LAYERS[: LAYERS.index(package)])
    offenders = {
        str(path.relative_to(REPO)): sorted(_imported_layers(path) & above)
        for path in (REPO / package).rglob("*.py")
        if _imported_layers(path) & above
    }
    assert offenders == {}


def test_domain_imports_no_io_libraries() -> None:
    """schemas and statemachine import neither Kafka nor aiohttp."""
    io_libraries = {"aiokafka", "aiohttp"}
    for package in ("schemas", "statemachine"):
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = (
                        [a.name for a in node.names]
                        if isinstance(node, ast.Import)
                        else [node.module or ""]
                    )
                    assert not {n.split(".")[0] for n in names} & io_libraries, path
