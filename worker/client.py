"""A small synchronous client of the Job Manager v3 REST API, for the ``jobmanager`` CLI.

Where to call and with which token, first match wins:

- URL: ``JOBMANAGER_URL``, else ``url`` in ``~/.config/jobmanager/config.toml`` (or under
  ``$XDG_CONFIG_HOME``), else ``http://127.0.0.1:8080``.
- Token: ``JOBMANAGER_TOKEN``, else ``token`` in that file, else a local token minted exactly as
  ``jobmanager token`` does, when the local secret exists (``JOBMANAGER_JWT_SECRET`` or
  ``$JOBMANAGER_HOME/jwt-secret``); else none, and the gateway answers 401.

Every failure is a :class:`ClientError` whose text is one line meant for the user.
"""

import json
import os
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from pydantic import ValidationError

from adapters.http.auth import mint
from worker.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8080"
API = "/api/jobmanager/v3"
LOCAL_TENANT = "local"
LOCAL_TOKEN_SECONDS = 12 * 3600  # as `jobmanager token`
TIMEOUT_SECONDS = 30.0


class ClientError(Exception):
    """A failure the CLI prints as one line on stderr before exiting with 1."""


class ConfigError(ClientError):
    """The client's configuration cannot be used."""


class Unreachable(ClientError):
    """No HTTP answer: connection refused, unknown host, timeout, reset."""


class ApiError(ClientError):
    """An error answer of the API, ``{"errors": [{"code", "message", "logref"}]}``."""

    def __init__(self, status: int, code: str, message: str, logref: str) -> None:
        super().__init__(f"error {code}: {message} (logref {logref})")
        self.status = status
        self.code = code
        self.message = message
        self.logref = logref


@dataclass(frozen=True, slots=True)
class ClientConfig:
    url: str
    token: str | None


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer: the status, the body as sent, and the body parsed."""

    status: int
    text: str
    data: Any


def config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "jobmanager" / "config.toml"


def load_config() -> ClientConfig:
    """URL and token from the environment, the config file, or the local defaults."""
    path = config_file()
    stored = _read_config_file(path)
    url = os.environ.get("JOBMANAGER_URL") or _string(stored, "url", path) or DEFAULT_URL
    token = os.environ.get("JOBMANAGER_TOKEN") or _string(stored, "token", path) or _local_token()
    return ClientConfig(url=_checked_url(url), token=token)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as unreadable:
        raise ConfigError(f"cannot read {path}: {unreadable}") from None


def _string(stored: Mapping[str, Any], key: str, path: Path) -> str | None:
    value = stored.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{path}: '{key}' must be a string")
    return value or None


def _checked_url(url: str) -> str:
    url = url.strip().rstrip("/")
    url = url.removesuffix(API)  # the base path is added per call
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"the Job Manager URL must look like {DEFAULT_URL}, got {url!r}")
    return url


def _local_token() -> str | None:
    """A token as ``jobmanager token`` prints it, when the local secret already exists."""
    try:
        settings = Settings()
    except ValidationError:
        return None  # broken JOBMANAGER_* settings concern the server, not this client
    if settings.jwt_secret is None and not (settings.home / "jwt-secret").is_file():
        return None  # never create a secret from the client
    try:
        secret = settings.resolved_jwt_secret()
    except OSError as unreadable:
        raise ConfigError(f"cannot read the local JWT secret: {unreadable}") from None
    return mint(secret, LOCAL_TENANT, lifetime_seconds=LOCAL_TOKEN_SECONDS)


def token_tenant(token: str | None) -> str:
    """The ``ten`` claim of the token, read without checking it (only to find local files)."""
    if token is None:
        return LOCAL_TENANT
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return LOCAL_TENANT
    tenant = claims.get("ten")
    return tenant if isinstance(tenant, str) and tenant else LOCAL_TENANT


class JobManagerClient:
    """The Job Manager v3 calls the CLI makes."""

    def __init__(self, url: str, token: str | None, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_config(cls) -> "JobManagerClient":
        config = load_config()
        return cls(config.url, config.token)

    def submit(self, request: Mapping[str, Any], idempotency_key: str | None = None) -> Answer:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/jobs", body=request, headers=headers)

    def get(self, job_id: str) -> Answer:
        return self._call("GET", f"/jobs/{_segment(job_id)}")

    def list_jobs(
        self,
        job_filter: Mapping[str, Any] | None = None,
        page: int | None = None,
        size: int | None = None,
    ) -> Answer:
        query: dict[str, str] = {}
        if page is not None:
            query["pageNumber"] = str(page)
        if size is not None:
            query["pageSize"] = str(size)
        if job_filter:
            query["filter"] = json.dumps(job_filter, separators=(",", ":"))
        return self._call("GET", "/jobs", query=query)

    def stop(self, job_id: str) -> Answer:
        return self._call("POST", f"/jobs/{_segment(job_id)}/stop")

    def paragraphs(self, job_id: str) -> Answer:
        return self._call("GET", f"/jobs/{_segment(job_id)}/paragraphs")

    def schedules(
        self,
        method: str,
        schedule_id: str | None = None,
        action: str | None = None,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Answer:
        """``/schedules``, ``/schedules/{id}`` or ``/schedules/{id}/{action}``."""
        path = "/schedules" if schedule_id is None else f"/schedules/{_segment(schedule_id)}"
        return self._call(method, f"{path}/{action}" if action else path, body=body, query=query)

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        url = f"{self.url}{API}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        sent = {"Accept": "application/json", **(headers or {})}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data, sent, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                status, text = answer.status, answer.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            raise _api_error(error) from None
        except urllib.error.URLError as error:
            raise self._unreachable(error.reason) from None
        except (OSError, ValueError) as error:  # timeouts, resets, malformed answers
            raise self._unreachable(error) from None
        if not text and status == 204:  # DELETE answers no content
            return Answer(status, text, None)
        try:
            return Answer(status, text, json.loads(text))
        except json.JSONDecodeError:
            raise ClientError(
                f"{self.url} answered {method} {path} with something other than JSON;"
                " is JOBMANAGER_URL the Job Manager?"
            ) from None

    def _unreachable(self, reason: object) -> Unreachable:
        if isinstance(reason, ConnectionRefusedError):
            why = "connection refused (is `jobmanager serve` running there?)"
        elif isinstance(reason, TimeoutError):
            why = f"no answer within {self.timeout:g} s"
        else:
            why = str(reason) or type(reason).__name__
        return Unreachable(
            f"cannot reach the Job Manager at {self.url}: {why}."
            " Set JOBMANAGER_URL or `url` in the config file to use another one."
        )


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _api_error(error: urllib.error.HTTPError) -> ApiError:
    logref = error.headers.get("X-Request-Id") or "-"
    try:
        raw = error.read().decode("utf-8", "replace")
    except OSError:
        raw = ""
    try:
        first = json.loads(raw)["errors"][0]
        return ApiError(
            error.code,
            str(first.get("code") or f"http{error.code}"),
            str(first.get("message") or error.reason),
            str(first.get("logref") or logref),
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        message = raw.strip().splitlines()[0][:200] if raw.strip() else str(error.reason)
        return ApiError(error.code, f"http{error.code}", message, logref)
