"""P7: a job's time limit survives the loss of its worker.

Worker A is SIGKILLed in the middle of a paragraph that would run far past the job's limit;
worker B, started once A is dead, takes the partition over. The job must end within its limit
plus the detection bound, counted from when it started RUNNING: a worker's death never leaves a
job running (or RUNNING in the projection) past its limit for longer than the takeover takes.
"""

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import LEASE_SECONDS, SESSION_TIMEOUT_MS
from tests.reliability.figures import record
from tests.reliability.history import check_history
from tests.reliability.processes import cluster, note
from worker.jobs import WORKER_LOST_MESSAGE
from worker.settings import Settings

pytestmark = pytest.mark.kafka

LIMIT_SECONDS = 4
DETECTION_BOUND_SECONDS = SESSION_TIMEOUT_MS / 1000 + LEASE_SECONDS + 12


def test_time_limit_holds_when_the_worker_dies_mid_paragraph(
    fault_settings: Settings, tmp_path: Path
) -> None:
    """SIGKILL during a 60 s paragraph of a 4 s job: it ends within 4 s plus the bound."""
    with cluster(fault_settings, tmp_path) as jobs:
        a = jobs.worker("worker-a")
        jobs.wait_assigned(a)
        job_id = jobs.submit(jobs.job_body(note("import time\ntime.sleep(60)"), LIMIT_SECONDS))
        jobs.wait_status(job_id, {"RUNNING"}, within=60)
        running = time.monotonic()
        # Into the paragraph, well before the limit, so A's own timer never fires.
        time.sleep(1.0)
        a.signal(signal.SIGKILL)
        kills = int(a.wait_exit(10) == -signal.SIGKILL)
        assert kills == 1, "worker A died of the SIGKILL"
        jobs.worker("worker-b")
        final = jobs.wait_final(job_id, within=LIMIT_SECONDS + DETECTION_BOUND_SECONDS + 30)
        elapsed = time.monotonic() - running

        assert (final["status"], final["message"]) == ("FAILED", WORKER_LOST_MESSAGE)
        assert elapsed < LIMIT_SECONDS + DETECTION_BOUND_SECONDS, f"took {elapsed:.1f} s"
        report = asyncio.run(
            check_history(
                fault_settings.kafka_bootstrap_servers, fault_settings.events_topic, {job_id}
            )
        )
        assert report.ok, report.summary()
    record(
        "P7",
        "sigkill_mid_paragraph",
        jobs_submitted=len(report.histories),
        faults_injected=kills,
        **report.safety(),
        limit_seconds=LIMIT_SECONDS,
        running_to_final_seconds=round(elapsed, 2),
    )
