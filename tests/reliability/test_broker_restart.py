"""P4: the broker restarts under load; no accepted job is lost and nothing needs a restart.

A private single-node KRaft broker (never the shared one) serves one real ``jobmanager serve``.
Two clients submit jobs steadily, with an Idempotency-Key each, as a careful client does. The
broker is stopped (a clean shutdown), left away for a while, and started again on the same data.
While it is away every POST must be answered 503 with Retry-After within the configured ack
timeout (plus a margin), never hang, and GETs keep answering from the projection. Once it is
back, POSTs are accepted again by the same process, the refused submits are retried with their
keys, and every accepted job reaches a final status. The whole events topic is then judged by
``tests.reliability.history.check_history``: no job lost, one terminal each, legal moves only.
"""

import asyncio
import json
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.kafka_broker import KAFKA_DEPLOY, free_port
from tests.reliability.figures import record
from tests.reliability.history import check_history
from tests.reliability.live import JOBS, job_body, token, wait_all_final
from tests.service import Service, fresh_settings, running_service
from worker.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.reliability, pytest.mark.timeout(300)]

ACK_TIMEOUT_SECONDS = 3.0
ANSWER_MARGIN_SECONDS = 2.0  # over the ack timeout, for a loaded 2-core machine
SUBMIT_INTERVAL_SECONDS = 0.15
LOAD_BEFORE_SECONDS = 3.0
OUTAGE_SECONDS = 8.0
LOAD_AFTER_SECONDS = 4.0
REAL_NOTE_EVERY = 6  # one job in six runs a note; the others fail at input validation
CLIENTS = 2  # threads submitting at once


@dataclass
class PrivateBroker:
    """A broker this test may stop and start: its own ports and data directory."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {
            **os.environ,
            "KAFKA_PORT": str(free_port()),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "KAFKA_DATA_DIR": str(self.data_dir),
        }

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.env['KAFKA_PORT']}"

    def up(self) -> float:
        return self._run("up.sh")

    def down(self, *options: str) -> float:
        return self._run("down.sh", *options)

    def _run(self, script: str, *options: str) -> float:
        started = time.monotonic()
        done = subprocess.run(
            ["bash", str(KAFKA_DEPLOY / script), *options],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        return time.monotonic() - started


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    private = PrivateBroker(tmp_path / "kafka")
    private.up()
    try:
        yield private
    finally:
        private.down("--purge")


@pytest.fixture
def restart_settings(broker: PrivateBroker, tmp_path: Path) -> Settings:
    return fresh_settings(
        broker.bootstrap,
        tmp_path / "home",
        broker_ack_timeout_seconds=ACK_TIMEOUT_SECONDS,
        shutdown_grace_seconds=1.0,
    )


@dataclass
class Load:
    """Submits jobs at a steady pace from a thread and keeps what each answer was."""

    service: Service
    settings: Settings
    bearer: str
    accepted: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> job id
    refused: dict[str, bytes] = field(default_factory=dict)  # Idempotency-Key -> body (503)
    statuses: Counter[int] = field(default_factory=Counter)
    slowest_503: float = 0.0
    without_retry_after: int = 0
    hangs: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _count: int = 0

    def submit(self, key: str, body: bytes) -> int | None:
        started = time.monotonic()
        try:
            answer = self.service.raw(
                "POST",
                JOBS,
                body,
                {"Authorization": f"Bearer {self.bearer}", "Idempotency-Key": key},
            )
        except OSError:  # urllib's timeout (30 s) or a dropped connection
            with self._lock:
                self.hangs += 1
            return None
        took = time.monotonic() - started
        with self._lock:
            self.statuses[answer.status] += 1
            if answer.status in (200, 201):
                self.accepted[key] = answer.body["id"]
                self.refused.pop(key, None)
            elif answer.status == 503:
                self.refused[key] = body
                self.slowest_503 = max(self.slowest_503, took)
                if "Retry-After" not in answer.headers:
                    self.without_retry_after += 1
        return answer.status

    def counted(self) -> Counter[int]:
        with self._lock:
            return Counter(self.statuses)

    def accepted_ids(self) -> list[str]:
        with self._lock:
            return list(self.accepted.values())

    def run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._count += 1
                real = self._count % REAL_NOTE_EVERY == 0
            body = job_body(self.settings, missing_model=not real)
            self.submit(uuid.uuid4().hex, json.dumps(body).encode())
            self._stop.wait(SUBMIT_INTERVAL_SECONDS)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run, daemon=True) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        return threads

    def stop(self, threads: list[threading.Thread]) -> None:
        self._stop.set()
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), "a load thread hung"


def _gets_during(service: Service, bearer: str, job_ids: list[str], seconds: float) -> Counter[str]:
    """GET known jobs and /readyz for ``seconds``; count how each answered."""
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for job_id in job_ids[:3]:
            started = time.monotonic()
            try:
                answer = service.request("GET", f"{JOBS}/{job_id}", token=bearer)
                fast = time.monotonic() - started < ANSWER_MARGIN_SECONDS
                seen[f"get {answer.status}{'' if fast else ' slow'}"] += 1
            except OSError:
                seen["get hang"] += 1
        try:
            ready = service.request("GET", "/readyz")
            seen[f"readyz {ready.status}"] += 1
        except OSError:
            seen["readyz hang"] += 1
        time.sleep(0.2)
    return seen


def test_broker_restart_under_load_loses_nothing(
    broker: PrivateBroker, restart_settings: Settings, tmp_path: Path
) -> None:
    """503 with Retry-After in time while the broker is away; all accepted jobs end; no restart."""
    settings = restart_settings
    bearer = token(settings)
    with running_service(settings, tmp_path / "serve.log") as service:
        load = Load(service, settings, bearer)
        threads = load.start()
        time.sleep(LOAD_BEFORE_SECONDS)  # steady load before the fault
        assert load.accepted, f"nothing accepted before the fault: {load.statuses}"
        before_outage = load.counted()

        stopped_in = broker.down()
        outage_started = time.monotonic()
        known = load.accepted_ids()
        during = _gets_during(service, bearer, known, OUTAGE_SECONDS)
        during_posts = load.counted() - before_outage
        started_in = broker.up()
        outage = time.monotonic() - outage_started

        back = time.monotonic()
        accepted_before = len(load.accepted)
        deadline = back + 60
        while len(load.accepted) == accepted_before and time.monotonic() < deadline:
            time.sleep(0.1)
        recovered_in = time.monotonic() - back
        time.sleep(LOAD_AFTER_SECONDS)
        load.stop(threads)

        retried = len(load.refused)
        # 200 to a retry: the refused command was delivered after all, once the broker was back.
        delivered_late = 0
        for key, body in list(load.refused.items()):
            for _ in range(20):  # the client's retries, each after its Retry-After
                status = load.submit(key, body)
                if status in (200, 201):
                    delivered_late += status == 200
                    break
                time.sleep(1)
        final = wait_all_final(service, bearer, load.accepted.values(), timeout=120)
        same_process = service.request("GET", "/healthz").status == 200

    report = asyncio.run(
        check_history(settings.kafka_bootstrap_servers, settings.events_topic, set(final))
    )
    server_errors = sum(n for status, n in load.statuses.items() if status >= 500 and status != 503)
    record(
        "P4",
        "test_broker_restart_under_load_loses_nothing",
        jobs_submitted=len(load.accepted),
        posts=sum(load.statuses.values()) + load.hangs,
        posts_during_outage=sum(during_posts.values()),
        answered_503=load.statuses[503],
        slowest_503_seconds=round(load.slowest_503, 2),
        ack_timeout_seconds=ACK_TIMEOUT_SECONDS,
        refusals_without_retry_after=load.without_retry_after,
        retried_after_503=retried,
        refused_but_delivered_later=delivered_late,
        still_refused_after_retries=len(load.refused),
        gets_during_outage=sum(n for k, n in during.items() if k.startswith("get")),
        gets_failed_during_outage=sum(
            n for k, n in during.items() if k.startswith("get") and k != "get 200"
        ),
        readyz_503_during_outage=during["readyz 503"],
        faults_injected=1,
        broker_stop_seconds=round(stopped_in, 1),
        broker_start_seconds=round(started_in, 1),
        outage_seconds=round(outage, 1),
        first_accept_after_broker_back_seconds=round(recovered_in, 1),
        **report.safety(),
        history_violations=len(report.violations),
        server_errors=server_errors,
        hangs=load.hangs + during["get hang"] + during["readyz hang"],
    )

    assert load.hangs == 0
    assert server_errors == 0, load.statuses
    assert during_posts[503] > 0, f"no POST met the outage: {during_posts}"
    assert load.slowest_503 < ACK_TIMEOUT_SECONDS + ANSWER_MARGIN_SECONDS
    assert load.without_retry_after == 0
    assert during["get 200"] > 0, during
    assert set(during) <= {"get 200", "readyz 503", "readyz 200"}, during
    assert during["readyz 503"] > 0, "readiness never said the broker was away"
    assert not load.refused, f"still refused after the broker came back: {len(load.refused)}"
    assert same_process
    assert report.ok, report.summary()
    assert report.jobs_lost == 0
