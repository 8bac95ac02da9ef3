"""The OpenAPI 3.1 document, generated from the pydantic models the gateway really uses."""

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from adapters.http.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_REACHABLE_ITEMS
from schemas.jobs import ErrorBody, JobPage, JobParagraphs, JobRequest, JobView
from schemas.schedules import SchedulePage, SchedulePatch, ScheduleRequest, ScheduleView
from schemas.status import JobStatus

BASE = "/api/jobmanager/v3"
_REF = "#/components/schemas/{model}"

_ERROR_TEXT = {
    400: "Bad input; the message says what is wrong",
    401: "Missing, invalid or expired token",
    403: "The token's scope does not allow this (or the XSRF check failed)",
    404: "No such job for this tenant",
    405: "Method not allowed here",
    409: "Conflict with the job's state or an earlier request",
    413: "Body too large",
    415: "Body is not application/json",
    429: "Too many requests for this tenant; see Retry-After",
    503: "The message broker did not acknowledge in time; see Retry-After",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status in (401, 403, 405, 429, *statuses):
        answer = _json(ErrorBody, _ERROR_TEXT[status])
        if status in (429, 503):
            answer["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
        answers[str(status)] = answer
    return answers


_JOB_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The job's id.",
}


def openapi_document() -> dict[str, Any]:
    _, definitions = models_json_schema(
        [
            (JobRequest, "validation"),
            (JobView, "serialization"),
            (JobPage, "serialization"),
            (ErrorBody, "serialization"),
            (JobParagraphs, "serialization"),
            (ScheduleRequest, "validation"),
            (SchedulePatch, "validation"),
            (ScheduleView, "serialization"),
            (SchedulePage, "serialization"),
        ],
        ref_template=_REF,
    )
    schemas = definitions.get("$defs", {})
    statuses = ", ".join(status.value for status in JobStatus)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Job Manager",
            "version": "3.0.0",
            "description": (
                "Runs Zeppelin notes as batch jobs; compatible with MindSphere's Predictive "
                f"Learning Job Manager v3. Job statuses: {statuses}."
            ),
        },
        "security": [{"bearer": []}],
        "paths": {
            f"{BASE}/jobs": {
                "post": {
                    "operationId": "createJob",
                    "summary": "Submit a job; answered once the broker acknowledged it.",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                            "description": "Repeats with the same key and body get the same job.",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(JobRequest)}},
                    },
                    "responses": {
                        "201": _json(JobView, "The job, in SUBMITTED"),
                        "200": _json(JobView, "The job an earlier request with this key created"),
                        **_errors(400, 409, 413, 415, 503),
                    },
                },
                "get": {
                    "operationId": "listJobs",
                    "summary": "The tenant's jobs, newest first.",
                    "parameters": _listing_parameters(
                        "jobs",
                        'JSON, e.g. {"status":{"or":[{"eq":"FAILED"},{"eq":"STOPPED"}]}}; '
                        "fields status, modelId, configurationId, message, creationDate.",
                    ),
                    "responses": {"200": _json(JobPage, "A page of jobs"), **_errors(400)},
                },
            },
            f"{BASE}/jobs/{{id}}": {
                "get": {
                    "operationId": "getJob",
                    "summary": "One job.",
                    "parameters": [_JOB_ID],
                    "responses": {"200": _json(JobView, "The job"), **_errors(404)},
                }
            },
            f"{BASE}/jobs/{{id}}/paragraphs": {
                "get": {
                    "operationId": "getJobParagraphs",
                    "summary": "Per-paragraph results of a job (an extension of Job Manager v3).",
                    "parameters": [_JOB_ID],
                    "responses": {
                        "200": _json(JobParagraphs, "The paragraphs finished so far"),
                        **_errors(404),
                    },
                }
            },
            f"{BASE}/jobs/{{id}}/stop": {
                "post": {
                    "operationId": "stopJob",
                    "summary": "Stop a job that is not final yet.",
                    "parameters": [_JOB_ID],
                    "responses": {
                        "200": _json(JobView, "The job, now STOPPING"),
                        **_errors(404, 409, 503),
                    },
                }
            },
            **_schedule_paths(),
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        # An empty value means the default: MindSphere's SDK sends bare parameters.
        "allowEmptyValue": True,
        "schema": schema,
        "description": description,
    }


def _listing_parameters(items: str, filter_description: str) -> list[dict[str, Any]]:
    """A listing's paging and filter, bounded as :class:`PageRequest` checks them."""
    return [
        _query(
            "pageNumber",
            {"type": "integer", "minimum": 0, "maximum": MAX_REACHABLE_ITEMS - 1},
            f"0-based page. Only the first {MAX_REACHABLE_ITEMS:,} {items} can be paged through "
            f"(pageNumber × pageSize < {MAX_REACHABLE_ITEMS}), as in MindSphere.",
        ),
        _query(
            "pageSize",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
            f"Items per page (default {DEFAULT_PAGE_SIZE}).",
        ),
        _query("filter", {"type": "string"}, filter_description),
    ]


_SCHEDULE_ID = {**_JOB_ID, "description": "The schedule's id."}
_SCHEDULE_BODY = {
    "required": True,
    "content": {"application/json": {"schema": _ref(ScheduleRequest)}},
}


def _schedule_paths() -> dict[str, Any]:
    """``/schedules``: MindSphere's schedule calls, plus PATCH (an extension)."""
    return {
        f"{BASE}/schedules": {
            "post": {
                "operationId": "createSchedule",
                "summary": "Create a schedule, STOPPED until started. scheduleString is 5-field "
                "cron or Quartz 6/7-field cron; timezone an IANA name (default UTC).",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        "description": "Repeats with the same key and body get the same schedule.",
                    }
                ],
                "requestBody": _SCHEDULE_BODY,
                "responses": {
                    "201": _json(ScheduleView, "The schedule, STOPPED"),
                    "200": _json(ScheduleView, "The schedule made earlier with this key"),
                    **_errors(400, 409, 413, 415, 503),
                },
            },
            "get": {
                "operationId": "listSchedules",
                "summary": "The tenant's schedules, newest first.",
                "parameters": _listing_parameters(
                    "schedules",
                    'JSON, e.g. {"status":"RUNNING"}; fields name, status, modelId, '
                    "scheduleString, creationDate.",
                ),
                "responses": {"200": _json(SchedulePage, "A page of schedules"), **_errors(400)},
            },
        },
        f"{BASE}/schedules/{{id}}": {
            "get": {
                "operationId": "getSchedule",
                "summary": "One schedule, with its next five due times while RUNNING.",
                "parameters": [_SCHEDULE_ID],
                "responses": {"200": _json(ScheduleView, "The schedule"), **_errors(404)},
            },
            "patch": {
                "operationId": "patchSchedule",
                "summary": "Change some fields of a schedule (an extension of Job Manager v3).",
                "parameters": [_SCHEDULE_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(SchedulePatch)}},
                },
                "responses": {
                    "200": _json(ScheduleView, "The changed schedule"),
                    **_errors(400, 404, 413, 415, 503),
                },
            },
            "delete": {
                "operationId": "deleteSchedule",
                "summary": "Delete a schedule; its jobs stay.",
                "parameters": [_SCHEDULE_ID],
                "responses": {"204": {"description": "Deleted"}, **_errors(404, 503)},
            },
        },
        f"{BASE}/schedules/{{id}}/start": {
            "post": {
                "operationId": "startSchedule",
                "summary": "Start firing the schedule's due times (status RUNNING).",
                "parameters": [_SCHEDULE_ID],
                "responses": {
                    "200": _json(ScheduleView, "The schedule, RUNNING"),
                    **_errors(404, 503),
                },
            }
        },
        f"{BASE}/schedules/{{id}}/stop": {
            "post": {
                "operationId": "stopSchedule",
                "summary": "Stop firing the schedule's due times (status STOPPED).",
                "parameters": [_SCHEDULE_ID],
                "responses": {
                    "200": _json(ScheduleView, "The schedule, STOPPED"),
                    **_errors(404, 503),
                },
            }
        },
    }
