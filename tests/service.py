"""Runs the real ``jobmanager`` processes for end-to-end tests."""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from tests.kafka_broker import free_port
from worker.settings import Settings

JOBMANAGER = Path(sys.executable).with_name("jobmanager")
FINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def fresh_settings(bootstrap: str, home: Path, **overrides: Any) -> Settings:
    """Settings with topics, consumer group and JWT secret no other test shares.

    Every ``*_topic`` setting is fresh, so a topic added later cannot leak between tests;
    ``overrides`` set the rest.
    """
    suffix = uuid.uuid4().hex[:10]
    topics = {
        name: f"test.{suffix}.{name.removesuffix('_topic')}"
        for name in Settings.model_fields
        if name.endswith("_topic")
    }
    fields: dict[str, Any] = {
        "home": home,
        "kafka_bootstrap_servers": bootstrap,
        "consumer_group": f"test-{suffix}",
        "topic_partitions": 3,
        "jwt_secret": SecretStr(secrets.token_urlsafe(32)),
        **topics,
        **overrides,
    }
    return Settings(**fields)


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a child process use exactly these settings."""
    values = settings.model_dump(mode="json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBMANAGER_")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    for name, value in values.items():
        if value is None:
            continue
        env[f"JOBMANAGER_{name.upper()}"] = str(value)
    assert settings.jwt_secret is not None
    env["JOBMANAGER_JWT_SECRET"] = settings.jwt_secret.get_secret_value()
    env["JOBMANAGER_LOG_FORMAT"] = "json"
    env.update(extra)
    return env


@dataclass
class Response:
    status: int
    body: Any
    headers: Mapping[str, str]


@dataclass
class Service:
    url: str
    env: dict[str, str]
    log: Path
    pid: int = 0  # the jobmanager process (for its memory, or to signal it)

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(JOBMANAGER), *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"jobmanager {' '.join(args)} failed: {done.stderr}"
        return done.stdout.strip()

    def job_body(self, note: Path) -> dict[str, str]:
        """A POST body for a new job of ``note``: a fresh model, folders (the input holding
        data.csv) and configuration, all of tenant "local", created with the CLI."""
        model_id = self.cli("models", "add", str(note))
        input_id = self.cli("folders", "create")
        output_id = self.cli("folders", "create")
        configuration_id = self.cli("configurations", "add", "--name", "local python")
        folders = Path(self.env["JOBMANAGER_HOME"]) / "tenants/local/folders"
        (folders / input_id / "data.csv").write_text("a,b\n1,2\n")
        return {
            "modelId": model_id,
            "configurationId": configuration_id,
            "inputFolderId": input_id,
            "outputFolderId": output_id,
            "maximumExecutionTimeInSeconds": "7200",
        }

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> Response:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.raw(method, path, data, headers)

    def raw(
        self, method: str, path: str, data: bytes | None, headers: Mapping[str, str]
    ) -> Response:
        """One HTTP call with exactly these headers (a JSON body is assumed when data is set)."""
        headers = {"Content-Type": "application/json", **headers} if data else dict(headers)
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return Response(answer.status, json.loads(answer.read()), answer.headers)
        except urllib.error.HTTPError as error:
            return Response(error.code, json.loads(error.read()), error.headers)

    def wait_for_status(
        self, job_id: str, token: str, statuses: set[str], timeout: float = 60.0
    ) -> dict[str, Any]:
        """Poll until the job has one of ``statuses``; fail with the log at the deadline."""
        deadline = time.monotonic() + timeout
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = self.request("GET", f"/api/jobmanager/v3/jobs/{job_id}", token=token)
            if answer.status == 200:
                seen = answer.body
                if seen["status"] in statuses:
                    return seen
            time.sleep(0.1)
        raise AssertionError(
            f"job {job_id} did not reach {statuses} in {timeout} s; last seen {seen}\n"
            + self.log.read_text()[-4000:]
        )


@contextmanager
def running_service(settings: Settings, log: Path, command: str = "serve") -> Iterator[Service]:
    """Start ``jobmanager <command>`` and wait until its gateway answers."""
    port = free_port()
    env = settings_env(settings, JOBMANAGER_PORT=str(port))
    with log.open("w") as sink:
        process = subprocess.Popen(
            [str(JOBMANAGER), command], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    service = Service(f"http://127.0.0.1:{port}", env, log, process.pid)
    try:
        _wait_until_healthy(service, process, timeout=90.0)
        yield service
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_healthy(service: Service, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"jobmanager exited with {process.returncode}:\n{service.log.read_text()[-4000:]}"
            )
        try:
            with urllib.request.urlopen(service.url + "/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"gateway not healthy in {timeout} s:\n{service.log.read_text()[-4000:]}")
