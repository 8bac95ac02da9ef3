"""Schedules through the real processes and broker: the API, firing, two schedulers, a restart.

One ``jobmanager serve`` (gateway, worker and its scheduler) serves the module; a second
``jobmanager scheduler`` process joins for the duplicate test, and the last test restarts
``serve`` to show the catch-up. Jobs of most schedules name a model that does not exist, so
they end FAILED at once without starting an engine; only the overlap test runs a real note.
"""

import json
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schemas.jobs import format_timestamp
from schemas.schedules import scheduled_job_id
from tests.service import FINAL, JOBMANAGER, Service, fresh_settings, running_service
from worker.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

SCHEDULES = "/api/jobmanager/v3/schedules"
JOBS = "/api/jobmanager/v3/jobs"
SLOW_NOTE = {
    "name": "slow",
    "paragraphs": [{"title": "Wait", "text": "%python\nimport time\ntime.sleep(300)"}],
}


class Deployment:
    """``jobmanager serve`` for the module, restartable with the same settings and topics."""

    def __init__(self, settings: Settings, directory: Path) -> None:
        self.settings = settings
        self.directory = directory
        self.starts = 0
        self._running: AbstractContextManager[Service] | None = None
        self.service = self.start()

    def start(self) -> Service:
        self.starts += 1
        self._running = running_service(self.settings, self.directory / f"serve-{self.starts}.log")
        self.service = self._running.__enter__()
        return self.service

    def stop(self) -> None:
        if self._running is not None:
            self._running.__exit__(None, None, None)
            self._running = None


@pytest.fixture(scope="module")
def deployment(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    settings = fresh_settings(
        kafka_bootstrap,
        tmp_path_factory.mktemp("schedules") / "home",
        rate_limit_per_second=10_000.0,
    )
    running = Deployment(settings, tmp_path_factory.mktemp("schedule-logs"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def token(deployment: Deployment) -> str:
    return deployment.service.cli("token")


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "test",
        "modelId": "no-such-model",  # the job fails at once: no engine needed
        "configurationId": "no-such-configuration",
        "inputFolderId": "in",
        "outputFolderId": "out",
        "maximumExecutionTime": 600,
        "scheduleString": "0 0 2 * * ?",
        "overlapPolicy": "allow",
    }
    body.update(overrides)
    return body


def _create(service: Service, token: str, **overrides: Any) -> dict[str, Any]:
    answer = service.request("POST", SCHEDULES, _body(**overrides), token)
    assert answer.status == 201, answer.body
    created: dict[str, Any] = answer.body
    return created


def _jobs_of(service: Service, token: str, schedule_id: str) -> list[dict[str, Any]]:
    """The schedule's jobs, found with the jobs list's scheduleId filter."""
    query = urllib.parse.quote(json.dumps({"scheduleId": schedule_id}))
    answer = service.request("GET", f"{JOBS}?pageSize=100&filter={query}", token=token)
    assert answer.status == 200, answer.body
    jobs: list[dict[str, Any]] = answer.body["jobs"]
    return jobs


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def _stays(check: Callable[[], bool], seconds: float) -> bool:
    """True when ``check`` holds throughout ``seconds`` (looked at every 0.1 s)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if not check():
            return False
        time.sleep(0.1)
    return check()


def _due_times(first: datetime, count: int) -> str:
    """A Quartz line (seconds and year) that fires at ``first`` and the next count-1 seconds."""
    last = first + timedelta(seconds=count - 1)
    assert last.minute == first.minute
    return (
        f"{first.second}-{last.second} {first.minute} {first.hour} {first.day} {first.month} ? "
        f"{first.year}"
    )


def _upcoming(seconds_ahead: float, count: int) -> datetime:
    """The first of ``count`` whole seconds, at least ``seconds_ahead`` from now, in one minute."""
    first = (datetime.now(UTC) + timedelta(seconds=seconds_ahead + 1)).replace(microsecond=0)
    if first.second + count > 60:
        first = first.replace(second=0) + timedelta(minutes=1)
    return first


def _fired_job_ids(log: Path) -> list[str]:
    fired = []
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"schedule fired"' in line:
            fired.append(json.loads(line)["job_id"])
    return fired


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- the API ---------------------------------------------------------------------------------


def test_create_start_stop_patch_delete(deployment: Deployment, token: str) -> None:
    """The lifecycle over the broker: STOPPED, RUNNING, STOPPED, changed, deleted (then 404)."""
    service = deployment.service
    created = _create(service, token, scheduleString="*/5 * * * *")
    path = f"{SCHEDULES}/{created['id']}"
    assert created["status"] == "STOPPED"
    assert created["maximumExecutionTime"] == "600"

    started = service.request("POST", f"{path}/start", token=token)
    assert started.status == 200
    assert started.body["status"] == "RUNNING"
    fire_times = [_timestamp(t) for t in started.body["nextFireTimes"]]
    assert len(fire_times) == 5
    assert all(t.minute % 5 == 0 and t.second == 0 for t in fire_times)
    stopped = service.request("POST", f"{path}/stop", token=token)
    assert (stopped.status, stopped.body["status"]) == (200, "STOPPED")
    patched = service.request("PATCH", path, {"name": "renamed"}, token)
    assert (patched.status, patched.body["name"]) == (200, "renamed")
    # MindSphere's Node SDK sends a JSON content type on GETs without a body.
    read = service.raw(
        "GET", path, None, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    assert (read.status, read.body["name"]) == (200, "renamed")
    other_tenant = service.cli("token", "--tenant", "other")
    assert service.request("GET", path, token=other_tenant).status == 404

    deleted = urllib.request.Request(
        service.url + path, method="DELETE", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(deleted, timeout=30) as answer:
        assert answer.status == 204
    assert service.request("GET", path, token=token).status == 404
    listed = service.request("GET", SCHEDULES, token=token).body["schedules"]
    assert created["id"] not in [s["id"] for s in listed]


def test_the_schedules_commands(deployment: Deployment, token: str) -> None:
    """jobmanager schedules create --start, get, list and delete against the running gateway."""
    service = deployment.service
    env = {**service.env, "JOBMANAGER_URL": service.url, "JOBMANAGER_TOKEN": token}

    def cli(*args: str, columns: int = 200) -> str:
        done = subprocess.run(
            [str(JOBMANAGER), "schedules", *args],
            env={**env, "COLUMNS": str(columns)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    created = json.loads(
        cli(
            "create", "--name", "from-cli", "--cron", "0 0 3 * * ?", "--timezone", "Asia/Tokyo",
            "--model", "m", "--configuration", "c", "--input", "i", "--output", "o", "--start",
            "--json",
        )
    )  # fmt: skip
    shown = cli("get", created["id"])
    listed = cli("list", columns=80)  # a narrow terminal still shows the id and the name
    deleted = cli("delete", created["id"])

    assert created["status"] == "RUNNING"
    assert all(t.endswith("T18:00:00.000Z") for t in created["nextFireTimes"])  # 03:00 Tokyo
    assert "Asia/Tokyo" in shown
    assert created["id"] in listed
    assert "from-cli" in listed
    assert created["id"] in deleted
    assert service.request("GET", f"{SCHEDULES}/{created['id']}", token=token).status == 404


@pytest.mark.parametrize(
    ("schedule_string", "expected"),
    [
        # Quartz's documented "10:15 on the last Friday of every month" (with a year).
        (
            "0 15 10 ? * 6L 2070",
            ["2070-01-31", "2070-02-28", "2070-03-28", "2070-04-25", "2070-05-30"],
        ),
        # Quartz's "the nearest weekday to the 15th" (a Saturday 15th: Friday the 14th) and
        # "the third Friday" of each month, in 2070 (fire times are searched 50 years ahead).
        ("0 15 10 15W * ? 2070", ["2070-01-15", "2070-02-14", "2070-03-14", "2070-04-15"]),
        ("0 15 10 ? * 6#3 2070", ["2070-01-17", "2070-02-21", "2070-03-21", "2070-04-18"]),
    ],
)
def test_quartz_strings_give_the_documented_days(
    deployment: Deployment, token: str, schedule_string: str, expected: list[str]
) -> None:
    """Quartz day rules (L, W, #) through the API: nextFireTimes lands on the expected days."""
    service = deployment.service
    created = _create(service, token, scheduleString=schedule_string)
    started = service.request("POST", f"{SCHEDULES}/{created['id']}/start", token=token).body
    service.request("POST", f"{SCHEDULES}/{created['id']}/stop", token=token)

    days = [t[:10] for t in started["nextFireTimes"]]
    assert days[: len(expected)] == expected
    assert all(t[11:] == "10:15:00.000Z" for t in started["nextFireTimes"])


def test_next_fire_times_cross_a_dst_change(deployment: Deployment, token: str) -> None:
    """09:00 in Berlin around the spring change of 2070: the UTC instant moves by an hour."""
    service = deployment.service
    created = _create(
        service, token, scheduleString="0 0 9 27-31 3 ? 2070", timezone="Europe/Berlin"
    )
    started = service.request("POST", f"{SCHEDULES}/{created['id']}/start", token=token).body
    service.request("POST", f"{SCHEDULES}/{created['id']}/stop", token=token)

    berlin = ZoneInfo("Europe/Berlin")
    local = [datetime(2070, 3, day, 9, tzinfo=berlin) for day in range(27, 32)]
    # The change (last Sunday of March, the 30th) is inside the five days.
    assert {moment.utcoffset() for moment in local} == {timedelta(hours=1), timedelta(hours=2)}
    assert started["nextFireTimes"] == [format_timestamp(moment) for moment in local]
    assert started["nextFireTimes"][2:4] == ["2070-03-29T08:00:00.000Z", "2070-03-30T07:00:00.000Z"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"scheduleString": "0 0 25 * * ?"}, "scheduleString"),
        ({"scheduleString": "* * * *"}, "scheduleString"),
        ({"scheduleString": "0 0 12 ? * MON#6"}, "scheduleString"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
    ],
)
def test_a_bad_cron_line_is_a_400_naming_the_field(
    deployment: Deployment, token: str, overrides: dict[str, str], field: str
) -> None:
    """Nothing is created; the error body names the field at fault."""
    answer = deployment.service.request("POST", SCHEDULES, _body(**overrides), token)

    assert answer.status == 400
    assert answer.body["errors"][0]["message"].startswith(f"{field}:")


# -- firing ----------------------------------------------------------------------------------


def test_an_every_second_schedule_fires_once_per_second(deployment: Deployment, token: str) -> None:
    """Started for a few seconds, a * * * * * ? schedule makes one job per second, no more."""
    service = deployment.service
    created = _create(service, token, scheduleString="* * * * * ?", name="every-second")
    path = f"{SCHEDULES}/{created['id']}"
    started = service.request("POST", f"{path}/start", token=token).body
    _wait_until(lambda: len(_jobs_of(service, token, created["id"])) >= 4, 15, "four jobs")
    stopped = service.request("POST", f"{path}/stop", token=token).body

    start = _timestamp(started["lastModifiedDate"])
    stop = _timestamp(stopped["lastModifiedDate"])
    jobs = _jobs_of(service, token, created["id"])
    assert _stays(lambda: len(_jobs_of(service, token, created["id"])) == len(jobs), 1.5)
    due = sorted(_timestamp(job["creationDate"]) for job in jobs)
    assert due == [due[0] + timedelta(seconds=n) for n in range(len(due))]  # no gap, no twin
    assert start < due[0] <= start + timedelta(seconds=1)
    # The due time just before the stop may lose the race with it; none after it fires.
    assert stop - timedelta(seconds=2) < due[-1] <= stop
    assert {job["id"] for job in jobs} == {scheduled_job_id(created["id"], t) for t in due}
    assert all(job["scheduleId"] == created["id"] for job in jobs)


def test_two_schedulers_make_one_job_per_due_time(
    deployment: Deployment, token: str, tmp_path: Path
) -> None:
    """With a second scheduler process running, each due time still makes exactly one job."""
    service = deployment.service
    log = tmp_path / "scheduler.log"
    with log.open("w") as sink:
        second = subprocess.Popen(
            [str(JOBMANAGER), "scheduler"],
            env={**service.env, "JOBMANAGER_WORKER_METRICS_PORT": "0"},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until(lambda: "scheduler started" in log.read_text(), 60, "second scheduler up")
        first = _upcoming(2.0, 4)
        created = _create(service, token, scheduleString=_due_times(first, 4), name="twice")
        service.request("POST", f"{SCHEDULES}/{created['id']}/start", token=token)
        expected = {scheduled_job_id(created["id"], first + timedelta(seconds=n)) for n in range(4)}
        _wait_until(
            lambda: {j["id"] for j in _jobs_of(service, token, created["id"])} == expected,
            20,
            "the four jobs",
        )
        assert _stays(lambda: len(_jobs_of(service, token, created["id"])) == 4, 1.0)
        # Both processes published due times, so the worker did drop repeated SubmitJobs.
        by_serve = set(_fired_job_ids(service.log)) & expected
        by_second = set(_fired_job_ids(log)) & expected
        assert by_serve | by_second == expected
        assert by_serve & by_second, (by_serve, by_second)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)


def test_skip_passes_over_due_times_while_the_job_runs(
    deployment: Deployment, token: str, tmp_path: Path
) -> None:
    """Overlap skip: no second job while the first runs; once it is stopped, the next fires."""
    service = deployment.service
    note = tmp_path / "slow.zpln"
    note.write_text(json.dumps(SLOW_NOTE))
    job_body = service.job_body(note)
    created = _create(
        service,
        token,
        scheduleString="* * * * * ?",
        overlapPolicy="skip",
        modelId=job_body["modelId"],
        configurationId=job_body["configurationId"],
        inputFolderId=job_body["inputFolderId"],
        outputFolderId=job_body["outputFolderId"],
    )
    path = f"{SCHEDULES}/{created['id']}"
    service.request("POST", f"{path}/start", token=token)
    try:
        _wait_until(lambda: len(_jobs_of(service, token, created["id"])) == 1, 15, "first job")
        [first] = _jobs_of(service, token, created["id"])
        service.wait_for_status(first["id"], token, {"RUNNING"})
        # Two more due times pass while the job runs: both skipped.
        assert _stays(lambda: len(_jobs_of(service, token, created["id"])) == 1, 2.2)
        assert service.request("POST", f"{JOBS}/{first['id']}/stop", token=token).status == 200
        service.wait_for_status(first["id"], token, FINAL)
        _wait_until(lambda: len(_jobs_of(service, token, created["id"])) >= 2, 10, "next job")
    finally:
        service.request("POST", f"{path}/stop", token=token)
    for job in _jobs_of(service, token, created["id"]):
        if job["status"] not in FINAL:
            service.request("POST", f"{JOBS}/{job['id']}/stop", token=token)
    later = [j for j in _jobs_of(service, token, created["id"]) if j["id"] != first["id"]]
    assert min(_timestamp(j["creationDate"]) for j in later) > _timestamp(first["creationDate"])


def test_a_restart_fires_the_missed_due_times_once(deployment: Deployment, token: str) -> None:
    """Three due times pass while serve is down; after the restart exactly one job fires."""
    service = deployment.service
    first = _upcoming(5.0, 3)
    created = _create(service, token, scheduleString=_due_times(first, 3), name="missed")
    service.request("POST", f"{SCHEDULES}/{created['id']}/start", token=token)
    deployment.stop()
    assert datetime.now(UTC) < first, "serve took too long to stop for this test"
    last = first + timedelta(seconds=2)
    _wait_until(lambda: datetime.now(UTC) > last + timedelta(seconds=0.5), 15, "due times pass")

    service = deployment.start()
    _wait_until(lambda: len(_jobs_of(service, token, created["id"])) >= 1, 30, "catch-up job")

    assert _stays(lambda: len(_jobs_of(service, token, created["id"])) == 1, 1.0)
    [job] = _jobs_of(service, token, created["id"])
    assert job["id"] == scheduled_job_id(created["id"], last)  # the latest missed due time
