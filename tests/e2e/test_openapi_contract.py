"""Contract test: the real gateway against its own OpenAPI document, with schemathesis.

One ``jobmanager serve`` (real Kafka) serves the whole module. Every operation of the document is
exercised with positive and negative data (examples, coverage and fuzzing phases), and every
response goes through the conformance checks below. Hypothesis is derandomized, so a run is
repeatable; a summary line is printed at the end of the module.

The schema is built at import from ``openapi_document()`` (the generator the gateway serves), and
``test_served_document_is_the_one_tested`` proves the running service serves exactly that
document. It is not loaded lazily with ``schemathesis.pytest.from_fixture``: schemathesis 4.32.5's
lazy runner sets ``request.node._nodeid``, which pytest 9.2 no longer has (AttributeError).
"""

import json
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import cycle
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from adapters.http.openapi import openapi_document
from tests.conftest import FIXTURES
from tests.service import Service, fresh_settings, running_service
from worker.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

OPENAPI = "/api/jobmanager/v3/openapi.json"
MAX_EXAMPLES = 50  # fuzzing examples per operation; examples/coverage add their own few
REQUEST_TIMEOUT_SECONDS = 10.0  # a hang fails the case instead of the whole run

# Not `positive_data_acceptance`: some limits are in the document's prose only, or not at all
# (`filter` must be JSON; pageNumber <= 10000 and pageNumber * pageSize < 10000), so schema-valid
# requests get a documented 400 by design.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,  # invalid input is refused with a 4xx
    unsupported_method,  # undocumented methods get 405 (coverage phase)
    ignored_auth,  # the same request without / with a bad token is refused
]

# A note that keeps its job RUNNING long enough for POST .../stop to find it not final.
SLOW_NOTE = {
    "name": "slow",
    "paragraphs": [{"title": "Wait", "text": "%python\nimport time\ntime.sleep(300)"}],
}


@dataclass
class Tally:
    """What the run did: examples per operation and the failing examples, for the summary."""

    examples: Counter[str] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failing: Counter[str] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        per_operation = ", ".join(
            f"{label}={count}" for label, count in sorted(self.examples.items())
        )
        return (
            f"schemathesis contract: {len(self.examples)} operations, "
            f"{sum(self.examples.values())} examples, {sum(self.failing.values())} failing "
            f"examples ({len(self.failures)} distinct) in {time.monotonic() - self.started:.1f} s"
            f" [{per_operation}]; modes {dict(sorted(self.modes.items()))};"
            f" statuses {dict(sorted(self.statuses.items()))}"
        )


@pytest.fixture(scope="module")
def contract_settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """As ``tests/conftest.py``'s ``settings``, for the module, with the rate limit lifted."""
    return fresh_settings(
        kafka_bootstrap,
        tmp_path_factory.mktemp("contract") / "home",
        broker_ack_timeout_seconds=10.0,
        rate_limit_per_second=100_000.0,
    )


@pytest.fixture(scope="module")
def contract_service(
    contract_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("contract-log") / "serve.log"
    with running_service(contract_settings, log) as running:
        yield running


@pytest.fixture(scope="module")
def token(contract_service: Service) -> str:
    return contract_service.cli("token")


@pytest.fixture(scope="module")
def seeded_job_ids(
    contract_service: Service, token: str, tmp_path_factory: pytest.TempPathFactory
) -> list[str]:
    """Real jobs (one succeeds, one fails, one runs long) so GET/stop hit existing ids too."""
    service = contract_service
    slow = tmp_path_factory.mktemp("notes") / "slow.zpln"
    slow.write_text(json.dumps(SLOW_NOTE))
    configuration_id = service.cli("configurations", "add", "--name", "local python")
    folders = Path(service.env["JOBMANAGER_HOME"]) / "tenants/local/folders"
    ids = []
    for note in (FIXTURES / "notes/success.zpln", FIXTURES / "notes/failing.zpln", slow):
        input_id = service.cli("folders", "create")
        (folders / input_id / "data.csv").write_text("a,b\n1,2\n")
        body = {
            "modelId": service.cli("models", "add", str(note)),
            "configurationId": configuration_id,
            "inputFolderId": input_id,
            "outputFolderId": service.cli("folders", "create"),
            "maximumExecutionTimeInSeconds": "600",
        }
        created = service.request("POST", "/api/jobmanager/v3/jobs", body, token)
        assert created.status == 201, created.body
        ids.append(created.body["id"])
    service.wait_for_status(ids[0], token, {"SUCCEEDED"})
    service.wait_for_status(ids[2], token, {"RUNNING"})
    return ids


@pytest.fixture(scope="module")
def seeded_schedule_ids(contract_service: Service, token: str) -> list[str]:
    """Schedules (stopped; due only in 2070) so the schedule calls by id hit existing ones too."""
    ids = []
    for name in ("first", "second", "third"):
        body = {
            "name": name,
            "modelId": "model",
            "configurationId": "configuration",
            "inputFolderId": "in",
            "outputFolderId": "out",
            "maximumExecutionTime": 600,
            "scheduleString": "0 0 2 1 1 ? 2070",
        }
        created = contract_service.request("POST", "/api/jobmanager/v3/schedules", body, token)
        assert created.status == 201, created.body
        ids.append(created.body["id"])
    return ids


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    counts = Tally()
    yield counts
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    lines = [counts.line(), *counts.failures.values()]
    if reporter is None or capture is None:  # pragma: no cover - only without those plugins
        print(*lines, sep="\n")
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)


schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.update(request_timeout=REQUEST_TIMEOUT_SECONDS)
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    database="none",
    # The bearer token is the test's own (sent on every call); generated or removed
    # Authorization headers would only be overridden and mislead the negative checks.
    with_security_parameters=False,
)


def test_served_document_is_the_one_tested(contract_service: Service) -> None:
    with urllib.request.urlopen(contract_service.url + OPENAPI, timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers.get_content_type() == "application/json"
        served = json.loads(answer.read())
    assert served == json.loads(json.dumps(openapi_document()))


@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
@schema.parametrize()
def test_gateway_conforms_to_its_openapi_document(
    case: schemathesis.Case[Any],
    contract_service: Service,
    token: str,
    seeded_job_ids: list[str],
    seeded_schedule_ids: list[str],
    tally: Tally,
) -> None:
    """Every answer of every operation, to valid and invalid requests, is what the document says."""
    if "id" in (case.path_parameters or {}) and case.meta is not None:
        # Three valid ids in four become a seeded job's (or schedule's) id, round-robin, the
        # same every run.
        seeded = seeded_schedule_ids if "/schedules/" in case.operation.path else seeded_job_ids
        picks = _picks.setdefault(case.operation.label, cycle([None, *seeded]))
        chosen = next(picks)
        if chosen is not None and case.meta.generation.mode.is_positive:
            case.path_parameters["id"] = chosen
    label = case.operation.label
    tally.examples[label] += 1
    tally.modes[case.meta.generation.mode.value if case.meta else "?"] += 1
    try:
        response = case.call_and_validate(
            base_url=contract_service.url,
            headers={"Authorization": f"Bearer {token}"},
            checks=CHECKS,
        )
    except BaseException as failed:
        tally.failing[label] += 1
        summary = str(failed).strip().splitlines()
        key = f"{label}: {summary[0] if summary else type(failed).__name__}"
        tally.failures.setdefault(key, f"FAILURE {key}\n{failed}")
        raise
    tally.statuses[response.status_code] += 1


_picks: dict[str, Iterator[str | None]] = {}
