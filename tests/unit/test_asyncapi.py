"""``docs/asyncapi.json`` agrees with the settings, the adapters and the generated schemas.

The document is JSON, not YAML: PyYAML is not a dependency of this project.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.kafka_schedules import SCHEDULES_TOPIC_CONFIG
from schemas.environments import lock_key
from worker.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOCUMENT = DOCS / "asyncapi.json"


def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _default(field: str) -> Any:
    return Settings.model_fields[field].default


def _pointer(document: dict[str, Any], fragment: str) -> Any:
    node: Any = document
    for part in fragment.removeprefix("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_it_is_asyncapi_3() -> None:
    assert str(_document()["asyncapi"]).startswith("3.")


def test_channel_addresses_are_the_default_topics() -> None:
    channels = _document()["channels"]
    assert {name: channel["address"] for name, channel in channels.items()} == {
        "commands": _default("commands_topic"),
        "events": _default("events_topic"),
        "deadLetters": _default("dead_letter_topic"),
        "environments": _default("environments_topic"),
        "schedules": _default("schedules_topic"),
    }
    for channel in channels.values():
        assert channel["bindings"]["kafka"]["partitions"] == _default("topic_partitions")


def test_every_file_ref_exists() -> None:
    files = [ref for ref in _refs(_document()) if not ref.startswith("#")]
    assert files, "the messages should refer to the JSON Schema files"
    missing = [ref for ref in files if not (DOCS / ref.partition("#")[0]).is_file()]
    assert missing == []


def test_every_local_ref_resolves() -> None:
    document = _document()
    for ref in _refs(document):
        if ref.startswith("#"):
            assert _pointer(document, ref[1:]) is not None, ref


@pytest.mark.parametrize(
    ("channel", "messages"),
    [
        ("commands", {"SubmitJob", "StopJob"}),
        ("events", {"JobStatusChanged", "JobProgressed"}),
        ("deadLetters", {"DeadLetter"}),
        ("environments", {"EnvironmentClaimed", "EnvironmentReleased"}),
        ("schedules", {"ScheduleDefined", "ScheduleDeleted", "ScheduleTicked"}),
    ],
)
def test_each_channel_carries_its_messages(channel: str, messages: set[str]) -> None:
    assert set(_document()["channels"][channel]["messages"]) == messages


def test_messages_are_keyed_by_job_id_and_use_the_adapters_headers() -> None:
    components = _document()["components"]
    schemas = components["schemas"]
    expected_headers = {
        "SubmitJob": {"type", "schema-version"},
        "StopJob": {"type", "schema-version"},
        "JobStatusChanged": {"type", "event-id"},
        "JobProgressed": {"type", "event-id"},
        "DeadLetter": {"reason", "origin"},
    }
    for name, headers in expected_headers.items():
        message = components["messages"][name]
        header_schema = _pointer(_document(), message["headers"]["$ref"][1:])
        assert set(header_schema["required"]) == headers
        # The W3C trace headers are there only when the sender traces (JOBMANAGER_TRACING).
        optional = {"traceparent", "tracestate"} if name != "DeadLetter" else set()
        assert set(header_schema["properties"]) == headers | optional
        assert "key" in message["bindings"]["kafka"]
        if name != "DeadLetter":
            assert message["payload"] == {"$ref": f"../schemas/json/{name}.json"}
            assert message["bindings"]["kafka"]["key"] == {"$ref": "#/components/schemas/JobIdKey"}
    assert schemas["CommandHeaders"]["properties"]["type"]["enum"] == ["SubmitJob", "StopJob"]
    assert schemas["EventHeaders"]["properties"]["type"]["enum"] == [
        "JobStatusChanged",
        "JobProgressed",
    ]


def test_environment_messages_are_keyed_by_configuration_without_headers() -> None:
    """``KafkaEnvironmentLocks`` keys claims by ``lock_key`` and sends no headers."""
    components = _document()["components"]
    assert lock_key("tenant", "config") == "tenant/config"
    assert "<tenant>/<configurationId>" in components["schemas"]["EnvironmentKey"]["description"]
    for name in ("EnvironmentClaimed", "EnvironmentReleased"):
        message = components["messages"][name]
        assert "headers" not in message
        assert message["payload"] == {"$ref": f"../schemas/json/{name}.json"}
        assert message["bindings"]["kafka"]["key"] == {
            "$ref": "#/components/schemas/EnvironmentKey"
        }


def test_every_message_of_a_channel_is_a_component_with_its_name() -> None:
    document = _document()
    for channel in document["channels"].values():
        for name, ref in channel["messages"].items():
            assert ref == {"$ref": f"#/components/messages/{name}"}
            assert document["components"]["messages"][name]["name"] == name


def test_operations_gateway_sends_worker_receives_and_sends() -> None:
    operations = _document()["operations"]
    summary = {
        name: (op["action"], op["channel"]["$ref"], tuple(t["name"] for t in op["tags"]))
        for name, op in operations.items()
    }
    assert summary == {
        "gatewaySendsCommands": ("send", "#/channels/commands", ("gateway",)),
        "workerReceivesCommands": ("receive", "#/channels/commands", ("worker",)),
        "workerSendsEvents": ("send", "#/channels/events", ("worker",)),
        "workerSendsDeadLetters": ("send", "#/channels/deadLetters", ("worker",)),
        "projectionsReceiveEvents": ("receive", "#/channels/events", ("gateway", "worker")),
        "workerSendsEnvironmentClaims": ("send", "#/channels/environments", ("worker",)),
        "workerReceivesEnvironmentClaims": ("receive", "#/channels/environments", ("worker",)),
        "gatewaySendsSchedules": ("send", "#/channels/schedules", ("gateway",)),
        "schedulerSendsCommands": ("send", "#/channels/commands", ("scheduler",)),
        "schedulerSendsTicks": ("send", "#/channels/schedules", ("scheduler",)),
        "schedulesAreFolded": ("receive", "#/channels/schedules", ("gateway", "scheduler")),
    }
    group = operations["workerReceivesCommands"]["bindings"]["kafka"]["groupId"]
    assert group["default"] == _default("consumer_group")


@pytest.mark.parametrize(
    ("operation", "channel", "messages"),
    [
        ("workerSendsEvents", "events", ["JobStatusChanged", "JobProgressed"]),
        ("projectionsReceiveEvents", "events", ["JobStatusChanged", "JobProgressed"]),
        (
            "workerSendsEnvironmentClaims",
            "environments",
            ["EnvironmentClaimed", "EnvironmentReleased"],
        ),
        (
            "workerReceivesEnvironmentClaims",
            "environments",
            ["EnvironmentClaimed", "EnvironmentReleased"],
        ),
    ],
)
def test_operations_carry_every_message_of_their_channel(
    operation: str, channel: str, messages: list[str]
) -> None:
    refs = [m["$ref"] for m in _document()["operations"][operation]["messages"]]
    assert refs == [f"#/channels/{channel}/messages/{name}" for name in messages]


def test_schedule_records_are_compacted_keyed_and_use_the_adapters_headers() -> None:
    """``KafkaScheduleLog`` keys by ``message_key`` with type and event-id headers, on a
    topic the bootstrap creates compacted."""
    document = _document()
    channel = document["channels"]["schedules"]
    assert channel["bindings"]["kafka"]["topicConfiguration"] == {
        "cleanup.policy": [SCHEDULES_TOPIC_CONFIG["cleanup.policy"]]
    }
    components = document["components"]
    assert "<tenant>/<scheduleId>/ticks" in components["schemas"]["ScheduleKey"]["description"]
    headers = components["schemas"]["ScheduleHeaders"]
    assert set(headers["required"]) == set(headers["properties"]) == {"type", "event-id"}
    for name in ("ScheduleDefined", "ScheduleDeleted", "ScheduleTicked"):
        message = components["messages"][name]
        assert message["payload"] == {"$ref": f"../schemas/json/{name}.json"}
        assert message["headers"] == {"$ref": "#/components/schemas/ScheduleHeaders"}
        assert message["bindings"]["kafka"]["key"] == {"$ref": "#/components/schemas/ScheduleKey"}
        assert name in headers["properties"]["type"]["enum"]
