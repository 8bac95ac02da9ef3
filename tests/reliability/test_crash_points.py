"""P1 and P2: a worker SIGKILLed at each point of a job's life; a second worker takes over.

Every case runs real processes (a gateway that stays up, worker A armed with one failpoint,
worker B started once A is dead) on the real broker, then reads the whole events topic with the
history checker. The job must reach exactly one final status: the one a takeover gives at that
point (a job nobody began is run by B; one B finds begun is ended FAILED "worker lost", or
STOPPED when its user had asked to stop it).
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
from worker.jobs import STOPPED_MESSAGE, SUCCEEDED_MESSAGE, WORKER_LOST_MESSAGE
from worker.settings import Settings

pytestmark = pytest.mark.kafka

# Session timeout, the job's lease, then B's join and catch-up (about 2 s here), with room for
# a loaded machine; the measured figure is recorded, this only keeps a hang from passing.
DETECTION_BOUND_SECONDS = SESSION_TIMEOUT_MS / 1000 + LEASE_SECONDS + 12

QUICK = note("import time\ntime.sleep(0.5)\nopen('output/done.txt', 'w').write('ok')")
LONG = note("import time\ntime.sleep(30)")

# failpoint -> (note, the user stops the job once RUNNING, final status, final message)
POINTS = {
    "command_received": (QUICK, False, "SUCCEEDED", SUCCEEDED_MESSAGE),
    "after_starting_published": (QUICK, False, "FAILED", WORKER_LOST_MESSAGE),
    "after_running_published": (QUICK, False, "FAILED", WORKER_LOST_MESSAGE),
    "after_stopping_published": (LONG, True, "STOPPED", STOPPED_MESSAGE),
    "storing_outputs": (QUICK, False, "FAILED", WORKER_LOST_MESSAGE),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_sigkill_at_each_point_ends_the_job_exactly_once(
    point: str, fault_settings: Settings, tmp_path: Path
) -> None:
    """SIGKILL at ``point``: the accepted job reaches one final status, the history is clean."""
    body_note, stop, expected_status, expected_message = POINTS[point]
    with cluster(fault_settings, tmp_path) as jobs:
        a = jobs.worker("worker-a", JOBMANAGER_FAILPOINTS=f"{point}:kill")
        jobs.wait_assigned(a)
        job_id = jobs.submit(jobs.job_body(body_note))
        if stop:
            jobs.wait_status(job_id, {"RUNNING"}, within=60)
            assert jobs.gateway is not None
            stopped = jobs.gateway.request(
                "POST", f"/api/jobmanager/v3/jobs/{job_id}/stop", token=jobs.token()
            )
            assert stopped.status == 200, stopped.body
        kills = int(a.wait_exit(60) == -signal.SIGKILL)
        assert kills == 1, "the failpoint killed worker A"
        killed = time.monotonic()

        b = jobs.worker("worker-b")
        final = jobs.wait_final(job_id, within=DETECTION_BOUND_SECONDS + 30)
        detection = time.monotonic() - killed

        assert (final["status"], final["message"]) == (expected_status, expected_message)
        assert detection < DETECTION_BOUND_SECONDS, f"took {detection:.1f} s"
        report = asyncio.run(
            check_history(
                fault_settings.kafka_bootstrap_servers, fault_settings.events_topic, {job_id}
            )
        )
        assert report.ok, report.summary()
        assert b.popen.poll() is None, "worker B is still running"
    record(
        "P1",
        f"sigkill_{point}",
        jobs_submitted=len(report.histories),
        faults_injected=kills,
        **report.safety(),
        detection_seconds=round(detection, 2),
        final_status=final["status"],
    )
    record(
        "P2",
        f"history_after_sigkill_{point}",
        jobs_submitted=len(report.histories),
        faults_injected=kills,
        **report.safety(),
        events=report.events,
        redeliveries=report.redeliveries,
        fenced_events=report.fenced_events,
        gaps=report.gaps,
    )


def test_a_worker_joining_mid_job_takes_nothing_from_it(
    fault_settings: Settings, tmp_path: Path
) -> None:
    """B joins while A runs a job on each partition: both end SUCCEEDED on A, none taken over."""
    with cluster(fault_settings, tmp_path) as jobs:
        a = jobs.worker("worker-a")
        jobs.wait_assigned(a)
        body = note("import time\ntime.sleep(4)\nopen('output/done.txt', 'w').write('ok')")
        job_ids = [jobs.submit(jobs.job_body(body), on_partition=p) for p in (0, 1)]
        for job_id in job_ids:
            jobs.wait_status(job_id, {"RUNNING"}, within=60)
        b = jobs.worker("worker-b")
        _, b_partitions = jobs.wait_split(a, b)
        finals = [jobs.wait_final(job_id, within=60) for job_id in job_ids]
        report = asyncio.run(
            check_history(
                fault_settings.kafka_bootstrap_servers,
                fault_settings.events_topic,
                set(job_ids),
            )
        )
        moved = [job_ids[p] for p in sorted(b_partitions)]
        rebalances = sum(1 for line in a.lines() if line.get("event") == "partitions assigned") - 1
        watched = [
            line.get("job_id")
            for line in b.lines()
            if line.get("event") == "watched job ended on its worker"
        ]

        assert [f["status"] for f in finals] == ["SUCCEEDED", "SUCCEEDED"], finals
        assert report.ok, report.summary()
        for job_id in job_ids:
            assert len({e.epoch for e in report.histories[job_id].effective}) == 1, job_id
        assert watched == moved, "B watched the job of the partition it got until it ended"
        assert rebalances >= 1, "B's join revoked A's partitions while the jobs ran"
    record(
        "P1",
        "worker_joins_mid_job",
        jobs_submitted=len(report.histories),
        # Rebalances worker A went through: every one revoked all its partitions.
        faults_injected=rebalances,
        **report.safety(),
        jobs_moved_partition=len(moved),
        jobs_taken_over=sum(
            len({e.epoch for e in report.histories[j].effective}) - 1 for j in job_ids
        ),
    )
