"""P6: a fresh gateway replaying the events topic ends with the same job views as the live one.

One real ``jobmanager serve`` runs jobs of every kind to their end (succeeded, failed in a
paragraph, failed on invalid inputs, stopped) plus one left RUNNING, then a second process,
``jobmanager gateway``, starts from nothing on the same topics. Every job, its paragraphs and
the whole list are fetched from both and compared field by field; an in-process fold of the
events topic is compared too, so a fold bug shared by both processes would still show.
"""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.projection_store import MemoryProjectionStore
from schemas.events import EVENTS
from tests.reliability.figures import record
from tests.reliability.live import JOBS, job_body, read_topic, token, wait_all_final
from tests.service import Service, running_service
from worker.projection import Projection
from worker.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.reliability, pytest.mark.timeout(180)]

SLOW_NOTE = {
    "name": "slow",
    "paragraphs": [{"title": "Wait", "text": "%python\nimport time\ntime.sleep(300)"}],
}


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """The test's settings; the job left RUNNING is not waited for at shutdown."""
    return settings.model_copy(update={"shutdown_grace_seconds": 0.5})


@pytest.fixture
def live(quick: Settings, tmp_path: Path) -> Iterator[Service]:
    with running_service(quick, tmp_path / "serve.log") as running:
        yield running


def _views(service: Service, bearer: str, job_ids: list[str]) -> dict[str, Any]:
    """Everything the API shows about the jobs: each job, its paragraphs, and the list."""
    shown: dict[str, Any] = {}
    for job_id in job_ids:
        shown[f"job {job_id}"] = service.request("GET", f"{JOBS}/{job_id}", token=bearer).body
        shown[f"paragraphs {job_id}"] = service.request(
            "GET", f"{JOBS}/{job_id}/paragraphs", token=bearer
        ).body
    shown["list"] = service.request("GET", f"{JOBS}?pageSize=100", token=bearer).body
    return shown


def _differences(left: Any, right: Any, where: str = "") -> list[str]:
    """Every leaf that differs, as a path; compares all fields, nested ones included."""
    if isinstance(left, dict) and isinstance(right, dict):
        return [
            found
            for key in sorted(set(left) | set(right))
            for found in _differences(left.get(key), right.get(key), f"{where}.{key}")
        ]
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [
            found
            for index, (a, b) in enumerate(zip(left, right, strict=True))
            for found in _differences(a, b, f"{where}[{index}]")
        ]
    return [] if left == right else [f"{where}: {left!r} ≠ {right!r}"]


def _leaves(value: Any) -> int:
    if isinstance(value, dict):
        return sum(_leaves(v) for v in value.values())
    if isinstance(value, list):
        return sum(_leaves(v) for v in value)
    return 1


def test_fresh_gateway_rebuilds_the_same_views(
    live: Service, quick: Settings, tmp_path: Path
) -> None:
    """Jobs of every outcome look the same, field for field, from a gateway started afresh."""
    settings = quick
    bearer = token(settings)
    slow = tmp_path / "slow.zpln"
    slow.write_text(json.dumps(SLOW_NOTE))
    bodies = [
        job_body(settings, "success.zpln"),
        job_body(settings, "success.zpln"),
        job_body(settings, "failing.zpln"),
        job_body(settings, missing_model=True),
        job_body(settings, str(slow)),  # stopped below
        job_body(settings, str(slow)),  # left RUNNING
    ]
    ids = []
    for body in bodies:
        created = live.request("POST", JOBS, body, bearer)
        assert created.status == 201, created.body
        ids.append(created.body["id"])
    live.wait_for_status(ids[4], bearer, {"RUNNING"})
    stopped = live.request("POST", f"{JOBS}/{ids[4]}/stop", token=bearer)
    assert stopped.status == 200, stopped.body
    final = wait_all_final(live, bearer, ids[:5])
    live.wait_for_status(ids[5], bearer, {"RUNNING"})
    outcomes = sorted(view["status"] for view in final.values())
    assert outcomes == ["FAILED", "FAILED", "STOPPED", "SUCCEEDED", "SUCCEEDED"], outcomes

    before = _views(live, bearer, ids)
    events = read_topic(settings.kafka_bootstrap_servers, settings.events_topic)
    started = time.monotonic()
    with running_service(settings, tmp_path / "gateway.log", command="gateway") as fresh:
        deadline = time.monotonic() + 60
        while (rebuilt := _views(fresh, bearer, ids)) != before and time.monotonic() < deadline:
            time.sleep(0.2)
        seconds = time.monotonic() - started
        after = _views(live, bearer, ids)

    folded = Projection(MemoryProjectionStore())
    for raw in events:
        folded.apply(EVENTS.validate_json(raw.value))
    folded_views = {
        f"job {job_id}": folded.store.get("local", job_id).model_dump(mode="json")  # type: ignore[union-attr]
        for job_id in ids
    }
    fold_differences = _differences({k: before[k] for k in folded_views}, folded_views)
    differences = _differences(before, rebuilt)
    record(
        "P6",
        "test_fresh_gateway_rebuilds_the_same_views",
        jobs_submitted=len(ids),
        jobs_compared=len(ids),
        events_replayed=len(events),
        fields_compared=_leaves(before),
        mismatched_fields=len(differences),
        mismatched_fields_in_fold=len(fold_differences),
        jobs_lost=sum(1 for job_id in ids if rebuilt.get(f"job {job_id}", {}).get("id") != job_id),
        seconds_to_rebuild=round(seconds, 1),
    )
    assert after == before, "the live views moved while comparing"
    assert not differences, differences[:20]
    assert not fold_differences, fold_differences[:20]
    assert before["list"]["totalElements"] == len(ids)
