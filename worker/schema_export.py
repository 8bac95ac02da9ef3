"""JSON Schemas of the Kafka messages, generated from the pydantic models.

``python -m worker.schema_export [DIRECTORY]`` regenerates ``schemas/json/`` (the default); the
files are committed, ``docs/asyncapi.json`` refers to them, and
``tests/unit/test_json_schemas.py`` fails when they drift from the models.

The schemas are generated in **serialization** mode: they describe the bytes on the topics, which
is what ``model_dump_json()`` writes and what a consumer in any language reads. Validation mode
would describe what the Python models *accept* instead, and gets the wire wrong:
``maximumExecutionTimeInSeconds`` is always written as a string (``"7200"``) but would be
documented as an integer. Two adjustments keep the serialized view precise:

* every field is ``required``: the publishers never omit fields (no ``exclude_defaults`` or
  ``exclude_none``), so ``type`` and ``schemaVersion`` are always there to dispatch on;
* a field serialized to a string keeps the ``format`` the validation schema gives it, so the
  timestamps stay ``date-time`` (ISO-8601 UTC, e.g. ``2024-05-01T12:00:00.000Z``).
"""

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import core_schema

from schemas.commands import COMMANDS, StopJob, SubmitJob
from schemas.environments import ENVIRONMENT_MESSAGES, EnvironmentClaimed, EnvironmentReleased
from schemas.events import EVENTS, JobProgressed, JobStatusChanged
from schemas.jobs import JobView
from schemas.schedules import SCHEDULE_MESSAGES, ScheduleDefined, ScheduleDeleted, ScheduleTicked

#: Where the generated files are committed.
DEFAULT_DIRECTORY = Path(__file__).resolve().parent.parent / "schemas" / "json"
#: The JSON Schema dialect pydantic generates.
DIALECT = "https://json-schema.org/draft/2020-12/schema"
MODE: Literal["serialization"] = "serialization"

_MODELS: dict[str, type[BaseModel]] = {
    "SubmitJob": SubmitJob,
    "StopJob": StopJob,
    "JobStatusChanged": JobStatusChanged,
    "JobProgressed": JobProgressed,
    "JobView": JobView,
    "EnvironmentClaimed": EnvironmentClaimed,
    "EnvironmentReleased": EnvironmentReleased,
    "ScheduleDefined": ScheduleDefined,
    "ScheduleDeleted": ScheduleDeleted,
    "ScheduleTicked": ScheduleTicked,
}


class _Generate(Protocol):
    """``BaseModel.model_json_schema`` and ``TypeAdapter.json_schema`` alike."""

    def __call__(
        self, *, by_alias: bool, mode: JsonSchemaMode, schema_generator: type[GenerateJsonSchema]
    ) -> JsonSchemaValue: ...


class _WireSchema(GenerateJsonSchema):
    """Serialization-mode schemas in which every field the publishers write is required."""

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        if self.mode == "serialization":
            return field.get("serialization_exclude_if") is None
        return super().field_is_required(field, total)


def _with_string_formats(wire: Any, accepted: Any) -> Any:
    """``wire`` with the ``format`` of ``accepted`` added where both describe a string."""
    if isinstance(wire, dict) and isinstance(accepted, dict):
        merged = {
            key: _with_string_formats(value, accepted.get(key)) for key, value in wire.items()
        }
        if (
            wire.get("type") == "string"
            and accepted.get("type") == "string"
            and "format" in accepted
            and "format" not in wire
        ):
            merged["format"] = accepted["format"]
        return merged
    if isinstance(wire, list) and isinstance(accepted, list) and len(wire) == len(accepted):
        return [_with_string_formats(w, a) for w, a in zip(wire, accepted, strict=True)]
    return wire


def _schema(title: str, generate: _Generate) -> dict[str, Any]:
    def build(mode: JsonSchemaMode) -> JsonSchemaValue:
        return generate(by_alias=True, mode=mode, schema_generator=_WireSchema)

    schema: dict[str, Any] = _with_string_formats(build(MODE), build("validation"))
    schema.setdefault("title", title)
    return {"$schema": DIALECT, **schema}


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema of every message (and of the job view they carry)."""
    generators: dict[str, _Generate] = {
        name: model.model_json_schema for name, model in _MODELS.items()
    }
    # The discriminated unions a consumer of each topic decodes, dispatching on ``type``.
    generators["Command"] = COMMANDS.json_schema  # SubmitJob | StopJob
    generators["Event"] = EVENTS.json_schema  # JobStatusChanged | JobProgressed
    generators["EnvironmentMessage"] = ENVIRONMENT_MESSAGES.json_schema  # Claimed | Released
    generators["ScheduleMessage"] = SCHEDULE_MESSAGES.json_schema  # Defined | Deleted | Ticked
    return {f"{name}.json": _schema(name, generators[name]) for name in sorted(generators)}


def render(schema: dict[str, Any]) -> str:
    """Pretty, stable text: sorted keys, two-space indent, a trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json_schemas(directory: Path) -> list[Path]:
    """Write every schema into ``directory`` (created if needed); return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8", newline="\n")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m worker.schema_export [DIRECTORY]``; the default is ``schemas/json/``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 or any(arg.startswith("-") for arg in args):
        print("usage: python -m worker.schema_export [DIRECTORY]", file=sys.stderr)
        return 2
    directory = Path(args[0]) if args else DEFAULT_DIRECTORY
    for path in write_json_schemas(directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
