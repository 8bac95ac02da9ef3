"""The docs generator: figures in, Markdown out; nothing invented for what did not run."""

import json
from pathlib import Path

from tests.reliability import report
from tests.reliability.figures import PROPERTIES


def _figures(directory: Path, prop: str, test: str, **counts: int | str) -> None:
    directory.mkdir(exist_ok=True)
    entry = {"property": prop, "test": test, "counts": counts, "pid": 1}
    (directory / f"{prop}-{test}.json").write_text(json.dumps(entry))


def _row(text: str, prop: str) -> list[str]:
    line = next(row for row in text.splitlines() if row.startswith(f"| {prop}: "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_properties_without_figures_say_not_run(tmp_path: Path) -> None:
    """Only the property with figures shows numbers; every other one says "not run"."""
    _figures(tmp_path, "P5", "poison", jobs_submitted=2, faults_injected=12, jobs_lost=0)

    text = report.render(report.load(tmp_path))

    assert _row(text, "P5")[1] == "none"
    assert _row(text, "P5")[3:6] == ["2", "12", "0"]
    for prop in set(PROPERTIES) - {"P5"}:
        row = _row(text, prop)
        assert row[1] == "not run"
        assert set(row[2:]) == {"–"}, row
    assert text.count("**Last run:** not run.") == len(PROPERTIES) - 1


def test_totals_add_up_and_failures_are_named(tmp_path: Path) -> None:
    """Totals sum the tests' counts; a lost job is named in the summary, not hidden."""
    _figures(tmp_path, "P1", "a", jobs_submitted=3, jobs_lost=0, hangs=0)
    _figures(tmp_path, "P1", "b", jobs_submitted=4, jobs_lost=2, note="text is kept")
    _figures(tmp_path, "P4", "c", jobs_submitted=5, server_errors=0)

    text = report.render(report.load(tmp_path))

    assert _row(text, "P1")[1] == "jobs_lost = 2"
    assert _row(text, "P1")[3] == "7"
    total = next(row for row in text.splitlines() if row.startswith("| **all (2 of 11 run)**"))
    assert "**12**" in total
    assert "| note | – | text is kept |" in text


def test_main_writes_the_file(tmp_path: Path) -> None:
    """``python -m tests.reliability.report --output`` writes the Markdown it renders."""
    _figures(tmp_path / "figures", "P3", "model", illegal_moves=0)
    output = tmp_path / "docs" / "RELIABILITY.md"

    assert report.main(["--figures", str(tmp_path / "figures"), "--output", str(output)]) == 0

    assert output.read_text() == report.render(report.load(tmp_path / "figures"))
