"""The OpenAPI 3.1 document, generated from the pydantic models the gateway really uses."""

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schemas.jobs import ErrorBody, JobPage, JobParagraphs, JobRequest, JobView
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
                    "parameters": [
                        _query(
                            "pageNumber",
                            {"type": "integer", "minimum": 0, "maximum": 9999},
                            "0-based page. Only the first 10,000 jobs can be paged through "
                            "(pageNumber × pageSize < 10000), as in MindSphere.",
                        ),
                        _query(
                            "pageSize",
                            {"type": "integer", "minimum": 1, "maximum": 100},
                            "Items per page (default 100).",
                        ),
                        _query(
                            "filter",
                            {"type": "string"},
                            'JSON, e.g. {"status":{"or":[{"eq":"FAILED"},{"eq":"STOPPED"}]}}; '
                            "fields status, modelId, configurationId, message, creationDate.",
                        ),
                    ],
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
