"""Real ``jobmanager`` processes for the fault tests: a gateway that stays up, and workers that
are killed, paused and stopped by signal.

Each process runs in its own session, so a worker's note kernels are killed with it at the end
of a test (a SIGKILLed worker leaves them behind, as a crashed one would).
"""

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from adapters.http.auth import mint
from adapters.http.gateway import idempotent_job_id
from adapters.local_files import LocalHome
from tests.kafka_broker import free_port
from tests.service import FINAL, JOBMANAGER, Service, settings_env
from worker.settings import Settings

JOBS = "/api/jobmanager/v3/jobs"
TENANT = "local"


@dataclass
class Process:
    name: str
    popen: "subprocess.Popen[bytes]"
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (other output is skipped)."""
        out = []
        for line in self.text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def logged(self, event: str, **fields: object) -> bool:
        return any(
            line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
            for line in self.lines()
        )

    def signal(self, number: int) -> None:
        self.popen.send_signal(number)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit in {timeout:g} s:\n{self.text()[-3000:]}"
            ) from None

    def kill_group(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


def wait_until(
    condition: Callable[[], bool], what: str, within: float, poll: float = 0.05
) -> float:
    """Poll ``condition`` until it holds; return the seconds it took, fail at the deadline."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"no {what} within {within:g} s")
        time.sleep(poll)
    return time.monotonic() - start


@dataclass
class Cluster:
    """One gateway (never harmed) and any number of workers, all on the test's topics."""

    settings: Settings
    directory: Path
    gateway: Service | None = None
    processes: list[Process] = field(default_factory=list)

    def start(self, command: str, name: str, **env: str) -> Process:
        port = free_port()
        environment = settings_env(
            self.settings,
            JOBMANAGER_PORT=str(port),
            JOBMANAGER_WORKER_METRICS_PORT="0",
            **env,
        )
        log = self.directory / f"{name}.log"
        with log.open("w") as sink:
            popen = subprocess.Popen(
                [str(JOBMANAGER), command],
                env=environment,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        if command == "gateway":
            self.gateway = Service(f"http://127.0.0.1:{port}", environment, log)
        return process

    def worker(self, name: str, **env: str) -> Process:
        return self.start("worker", name, **env)

    def wait_assigned(self, process: Process, within: float = 60.0) -> float:
        """Wait until the worker holds partitions (its first assignment is done)."""

        def assigned() -> bool:
            if process.popen.poll() is not None:
                raise AssertionError(f"{process.name} exited:\n{process.text()[-3000:]}")
            return any(
                line.get("event") == "partitions assigned" and line.get("partitions")
                for line in process.lines()
            )

        return wait_until(assigned, f"assignment of {process.name}", within)

    def wait_gateway(self, within: float = 60.0) -> Service:
        service = self.gateway
        assert service is not None

        def healthy() -> bool:
            try:
                return service.request("GET", "/healthz").status == 200
            except OSError:
                return False

        wait_until(healthy, "healthy gateway", within, poll=0.1)
        return service

    def token(self) -> str:
        assert self.settings.jwt_secret is not None
        return mint(self.settings.jwt_secret.get_secret_value(), TENANT)

    def job_body(self, note: dict[str, Any], seconds: int = 600) -> dict[str, str]:
        """A fresh model of ``note`` (Zeppelin JSON), folders and configuration, on disk."""
        home = LocalHome(self.settings.home)
        path = self.directory / f"note-{time.monotonic_ns()}.zpln"
        path.write_text(json.dumps(note))
        return {
            "modelId": home.add_model(TENANT, path),
            "configurationId": home.add_configuration(TENANT, "reliability"),
            "inputFolderId": home.create_folder(TENANT),
            "outputFolderId": home.create_folder(TENANT),
            "maximumExecutionTimeInSeconds": str(seconds),
        }

    def submit(self, body: dict[str, str], on_partition: int | None = None) -> str:
        """POST the job; with ``on_partition``, under an Idempotency-Key chosen so that the
        job's commands land on that partition of the commands topic."""
        assert self.gateway is not None
        headers = {"Authorization": f"Bearer {self.token()}"}
        if on_partition is not None:
            headers["Idempotency-Key"] = key_for_partition(
                on_partition, self.settings.topic_partitions
            )
        answer = self.gateway.raw("POST", JOBS, json.dumps(body).encode(), headers)
        assert answer.status == 201, answer.body
        return str(answer.body["id"])

    def partitions(self, process: Process) -> set[int]:
        """The partitions of the worker's latest assignment, from its log."""
        latest: list[int] = []
        for line in process.lines():
            if line.get("event") == "partitions assigned":
                latest = list(line.get("partitions") or [])
        return set(latest)

    def wait_split(self, *workers: Process, within: float = 60.0) -> list[set[int]]:
        """Wait until each worker holds a share of the partitions and together they hold all."""
        everything = set(range(self.settings.topic_partitions))

        def split() -> bool:
            shares = [self.partitions(w) for w in workers]
            return (
                all(shares)
                and set().union(*shares) == everything
                and sum(map(len, shares)) == len(everything)
            )

        wait_until(split, "partitions split between the workers", within, poll=0.1)
        return [self.partitions(w) for w in workers]

    def job(self, job_id: str) -> dict[str, Any]:
        assert self.gateway is not None
        answer = self.gateway.request("GET", f"{JOBS}/{job_id}", token=self.token())
        assert answer.status == 200, answer.body
        return dict(answer.body)

    def wait_status(self, job_id: str, statuses: set[str], within: float) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal seen
            seen = self.job(job_id)
            return seen["status"] in statuses

        try:
            wait_until(reached, f"{statuses} for {job_id}", within, poll=0.1)
        except AssertionError:
            logs = "\n".join(f"--- {p.name}\n{p.text()[-2500:]}" for p in self.processes)
            message = f"{job_id}: not {statuses} in {within:g} s: {seen}\n{logs}"
            raise AssertionError(message) from None
        return seen

    def wait_final(self, job_id: str, within: float) -> dict[str, Any]:
        return self.wait_status(job_id, FINAL, within)


def key_for_partition(partition: int, partitions: int) -> str:
    """An Idempotency-Key whose job id the producer's default partitioner puts on
    ``partition``."""
    partitioner = DefaultPartitioner()
    for attempt in range(10_000):
        key = f"reliability-{time.monotonic_ns()}-{attempt}"
        job_id = idempotent_job_id(TENANT, key)
        if partitioner(job_id.encode(), list(range(partitions)), list(range(partitions))) == (
            partition
        ):
            return key
    raise AssertionError(f"no key for partition {partition}")


def note(*paragraphs: str) -> dict[str, Any]:
    """A Zeppelin note of python paragraphs."""
    return {"name": "reliability", "paragraphs": [{"text": f"%python\n{p}"} for p in paragraphs]}


@contextmanager
def cluster(settings: Settings, directory: Path) -> Iterator[Cluster]:
    """A cluster with a healthy gateway; every process is killed (with its group) at the end."""
    running = Cluster(settings, directory)
    try:
        running.start("gateway", "gateway")
        running.wait_gateway()
        yield running
    finally:
        for process in running.processes:
            process.kill_group()
