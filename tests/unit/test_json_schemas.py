"""The committed JSON Schemas in ``schemas/json/`` match the models, and the models' messages.

``jsonschema`` is not installed in the venv, so samples are not run through a JSON Schema
validator; instead the tests check the structure a consumer relies on (required fields, the
status enum, the ``type`` and ``schemaVersion`` constants) and that each sample's JSON has
every required field, no field the schema does not list, and the constant values.
"""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from schemas.commands import StopJob, SubmitJob
from schemas.environments import EnvironmentClaimed, EnvironmentReleased
from schemas.events import JobProgressed, JobStatusChanged, event_id_for
from schemas.jobs import JobView
from schemas.notes import ParagraphResult, ParagraphStatus
from schemas.schedules import (
    Schedule,
    ScheduleDefined,
    ScheduleDeleted,
    ScheduleRequest,
    ScheduleTicked,
    TickOutcome,
)
from schemas.status import JobStatus
from tests.unit.factories import job_request, submit_command
from worker.schema_export import DEFAULT_DIRECTORY, json_schemas, render

REGENERATE = "run `.venv/bin/python -m worker.schema_export` and commit schemas/json/"
MESSAGES: dict[str, type[BaseModel]] = {
    "SubmitJob": SubmitJob,
    "StopJob": StopJob,
    "JobStatusChanged": JobStatusChanged,
    "JobProgressed": JobProgressed,
    "EnvironmentClaimed": EnvironmentClaimed,
    "EnvironmentReleased": EnvironmentReleased,
    "ScheduleDefined": ScheduleDefined,
    "ScheduleDeleted": ScheduleDeleted,
    "ScheduleTicked": ScheduleTicked,
}
#: File stem of each discriminated union → its members, in the union's order.
UNIONS: dict[str, tuple[str, ...]] = {
    "Command": ("SubmitJob", "StopJob"),
    "Event": ("JobStatusChanged", "JobProgressed"),
    "EnvironmentMessage": ("EnvironmentClaimed", "EnvironmentReleased"),
    "ScheduleMessage": ("ScheduleDefined", "ScheduleDeleted", "ScheduleTicked"),
}
STATUSES = [status.value for status in JobStatus]


def _schema_version(model: type[BaseModel]) -> object:
    return model.model_fields["schema_version"].default


def _samples() -> dict[str, BaseModel]:
    now = datetime.now(UTC)
    submit = submit_command()
    view = JobView.submitted(submit.job_id, submit.tenant, job_request(), now)
    started = view.model_copy(update={"status": JobStatus.STARTING})
    running = view.model_copy(update={"status": JobStatus.RUNNING, "message": "Running."})
    paragraph = ParagraphResult(
        index=0,
        id="paragraph_1",
        label="paragraph 1",
        interpreter="python",
        status=ParagraphStatus.FINISHED,
        output="42\n",
        error=None,
        started_at=now,
        finished_at=now,
    )
    claim = {"tenant": "local", "configuration_id": "config-1", "job_id": submit.job_id}
    return {
        "SubmitJob": submit,
        "StopJob": StopJob(
            command_id=uuid.uuid4().hex, job_id=submit.job_id, tenant="local", issued_at=now
        ),
        "JobStatusChanged": JobStatusChanged(
            event_id=event_id_for(submit.job_id, 2),
            job_id=submit.job_id,
            tenant="local",
            sequence=2,
            previous_status=JobStatus.SUBMITTED,
            status=JobStatus.STARTING,
            trigger="start",
            job=started,
            occurred_at=now,
        ),
        "JobProgressed": JobProgressed(
            event_id=event_id_for(submit.job_id, 4),
            job_id=submit.job_id,
            tenant="local",
            sequence=4,
            status=JobStatus.RUNNING,
            message="Running.",
            paragraph=paragraph,
            job=running,
            occurred_at=now,
        ),
        "JobProgressedStep": JobProgressed(
            event_id=event_id_for(submit.job_id, 3),
            job_id=submit.job_id,
            tenant="local",
            sequence=3,
            status=JobStatus.RUNNING,
            message="Started notebook execution.",
            job=running,
            occurred_at=now,
        ),
        "JobView": started,
        "EnvironmentClaimed": EnvironmentClaimed(**claim, occurred_at=now),
        "EnvironmentReleased": EnvironmentReleased(**claim, occurred_at=now),
        "ScheduleDefined": ScheduleDefined(
            event_id="e1",
            tenant="local",
            schedule_id="s1",
            revision=1,
            schedule=Schedule(
                id="s1",
                request=ScheduleRequest(
                    name="nightly",
                    model_id="m",
                    configuration_id="c",
                    input_folder_id="i",
                    output_folder_id="o",
                    maximum_execution_time=60,
                    schedule_string="0 2 * * *",
                ),
                creation_date=now,
                created_by="me",
                last_modified_date=now,
            ),
            occurred_at=now,
        ),
        "ScheduleDeleted": ScheduleDeleted(
            event_id="e2", tenant="local", schedule_id="s1", revision=2, occurred_at=now
        ),
        "ScheduleTicked": ScheduleTicked(
            event_id="e3",
            tenant="local",
            schedule_id="s1",
            due_at=now,
            outcome=TickOutcome.FIRED,
            job_id=submit.job_id,
            occurred_at=now,
        ),
    }


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), f"unexpected $ref {ref}"
        schema = root["$defs"][ref.removeprefix("#/$defs/")]
    return schema


def _nullable(schema: dict[str, Any], root: dict[str, Any], value: object) -> dict[str, Any]:
    """The branch of an ``anyOf`` with null that ``value`` takes (the schema itself otherwise)."""
    if "anyOf" not in schema:
        return schema
    branches = [_resolve(branch, root) for branch in schema["anyOf"]]
    if value is None:
        assert {"type": "null"} in branches
        return {"type": "null"}
    (taken,) = [branch for branch in branches if branch != {"type": "null"}]
    return taken


def _check_object(value: dict[str, Any], schema: dict[str, Any], root: dict[str, Any]) -> None:
    """``value`` has the required fields, only listed fields, and the constants; recursively."""
    schema = _resolve(schema, root)
    assert schema["type"] == "object"
    properties = schema["properties"]
    assert set(schema["required"]) <= set(value), f"missing in {schema['title']}"
    assert set(value) <= set(properties), f"unlisted in {schema['title']}"
    for name, field in value.items():
        declared = _nullable(_resolve(properties[name], root), root, field)
        if "const" in declared:
            assert field == declared["const"], name
        if "enum" in declared:
            assert field in declared["enum"], name
        if isinstance(field, dict):
            _check_object(field, declared, root)


def test_committed_files_equal_a_fresh_generation() -> None:
    fresh = {name: render(schema) for name, schema in json_schemas().items()}
    committed = {
        path.name: path.read_text(encoding="utf-8") for path in DEFAULT_DIRECTORY.glob("*")
    }
    outdated = sorted(name for name in fresh if fresh[name] != committed.get(name))
    assert not outdated, f"schemas/json/ is out of date ({', '.join(outdated)}): {REGENERATE}"
    unknown = sorted(committed.keys() - fresh.keys())
    assert not unknown, f"schemas/json/ has files no model generates, delete them: {unknown}"


def test_the_expected_schemas_are_generated() -> None:
    assert set(json_schemas()) == {
        "SubmitJob.json",
        "StopJob.json",
        "Command.json",
        "JobStatusChanged.json",
        "JobProgressed.json",
        "Event.json",
        "JobView.json",
        "EnvironmentClaimed.json",
        "EnvironmentReleased.json",
        "EnvironmentMessage.json",
        "ScheduleDefined.json",
        "ScheduleDeleted.json",
        "ScheduleTicked.json",
        "ScheduleMessage.json",
    }


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_each_message_schema_carries_its_type_and_schema_version(name: str) -> None:
    schema = json_schemas()[f"{name}.json"]
    model = MESSAGES[name]
    assert schema["properties"]["schemaVersion"]["const"] == _schema_version(model) == 1
    assert schema["properties"]["type"]["const"] == name
    assert {"schemaVersion", "type"} <= set(schema["required"])


@pytest.mark.parametrize("union", sorted(UNIONS))
def test_union_schemas_are_discriminated_unions_of_the_message_schemas(union: str) -> None:
    schema = json_schemas()[f"{union}.json"]
    members = UNIONS[union]
    assert schema["discriminator"]["propertyName"] == "type"
    assert schema["discriminator"]["mapping"] == {name: f"#/$defs/{name}" for name in members}
    assert schema["oneOf"] == [{"$ref": f"#/$defs/{name}"} for name in members]
    for name in members:
        union_member = dict(schema["$defs"][name])
        alone = json_schemas()[f"{name}.json"]
        assert union_member["properties"] == alone["properties"]
        assert union_member["required"] == alone["required"]


def test_every_schema_names_its_dialect_and_title() -> None:
    for name, schema in json_schemas().items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["title"] == name.removesuffix(".json")


# Extensions written only when set, so messages without them keep their original shape.
OMITTED_WHEN_UNSET = {"scheduleId"}


def test_every_field_is_required_because_publishers_write_every_field() -> None:
    for name, schema in json_schemas().items():
        for title, part in [(name, schema), *schema.get("$defs", {}).items()]:
            if part.get("type") == "object":
                assert set(part["required"]) <= set(part["properties"]), title
                optional = set(part["properties"]) - set(part["required"])
                assert optional <= OMITTED_WHEN_UNSET, title


def test_statuses_are_an_enum_of_the_seven_statuses() -> None:
    schema = json_schemas()["JobStatusChanged.json"]
    assert schema["$defs"]["JobStatus"]["enum"] == STATUSES
    assert schema["properties"]["status"] == {"$ref": "#/$defs/JobStatus"}
    assert {"$ref": "#/$defs/JobStatus"} in schema["properties"]["previousStatus"]["anyOf"]
    assert {"type": "null"} in schema["properties"]["previousStatus"]["anyOf"]
    assert json_schemas()["JobView.json"]["$defs"]["JobStatus"]["enum"] == STATUSES
    progressed = json_schemas()["JobProgressed.json"]
    assert progressed["$defs"]["JobStatus"]["enum"] == STATUSES
    assert progressed["properties"]["status"] == {"$ref": "#/$defs/JobStatus"}
    assert "previousStatus" not in progressed["properties"]


def test_the_wire_shapes_are_described() -> None:
    """Serialization mode: what ``model_dump_json`` writes, not what the models accept."""
    submit = json_schemas()["SubmitJob.json"]
    seconds = submit["$defs"]["JobRequest"]["properties"]["maximumExecutionTimeInSeconds"]
    assert seconds["type"] == "string"
    assert submit["properties"]["issuedAt"] == {
        "format": "date-time",
        "title": "Issuedat",
        "type": "string",
    }
    event = json_schemas()["JobStatusChanged.json"]
    assert event["properties"]["sequence"]["minimum"] == 1
    assert event["properties"]["occurredAt"]["format"] == "date-time"
    progressed = json_schemas()["JobProgressed.json"]
    assert progressed["properties"]["sequence"]["minimum"] == 1
    assert progressed["properties"]["paragraph"]["anyOf"] == [
        {"$ref": "#/$defs/ParagraphResult"},
        {"type": "null"},
    ]
    assert "paragraph" in progressed["required"]  # written as null when there is none
    for name in ("EnvironmentClaimed", "EnvironmentReleased"):
        claim = json_schemas()[f"{name}.json"]
        assert claim["properties"]["occurredAt"]["format"] == "date-time"
        assert {"tenant", "configurationId", "jobId"} <= set(claim["required"])


SAMPLES = [*MESSAGES, "JobProgressedStep", "JobView"]


def _schema_name(sample: str) -> str:
    return "JobProgressed" if sample == "JobProgressedStep" else sample


@pytest.mark.parametrize("name", SAMPLES)
def test_a_sample_message_fits_its_schema(name: str) -> None:
    sample = json.loads(_samples()[name].model_dump_json())
    schema = json_schemas()[f"{_schema_name(name)}.json"]
    _check_object(sample, schema, schema)


def test_the_progress_samples_cover_a_paragraph_and_a_step() -> None:
    samples = _samples()
    assert json.loads(samples["JobProgressed"].model_dump_json())["paragraph"] is not None
    assert json.loads(samples["JobProgressedStep"].model_dump_json())["paragraph"] is None


@pytest.mark.parametrize(
    ("union", "name"),
    [(union, name) for union, members in sorted(UNIONS.items()) for name in members]
    + [("Event", "JobProgressedStep")],
)
def test_a_sample_message_fits_its_union_schema(union: str, name: str) -> None:
    sample = json.loads(_samples()[name].model_dump_json())
    schema = json_schemas()[f"{union}.json"]
    branch = schema["discriminator"]["mapping"][sample["type"]]
    _check_object(sample, {"$ref": branch}, schema)
