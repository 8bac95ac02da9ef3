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


def test_every_subpackage_ships_in_the_wheel(tmp_path: Path) -> None:
    """A built wheel carries every package and module of the four layers (none left behind)."""
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [wheel] = tmp_path.glob("jobmanager-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(path.relative_to(REPO))
        for layer in LAYERS
        for path in (REPO / layer).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert expected - shipped == set()
