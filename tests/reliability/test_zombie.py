"""P8: a paused worker that lost its partitions cannot overwrite the new owner's moves.

Workers A and B share the commands topic's two partitions; the job lands on A's. A is frozen
(SIGSTOP) in the middle of its first paragraph; its session times out, B gets the partition,
finds the job RUNNING and ends it FAILED "worker lost" at a newer owner epoch (B's group
generation). While A is frozen its note kernel (its own process) finishes the paragraph, so when
A is thawed (SIGCONT) it has a paragraph result to publish at once, under its old epoch. Every
reader drops such writes (``worker.projection.apply``), A's Mover sees its event did not take
effect (or that the job has a newer owner) and stops the job without another word.
"""

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.reliability.conftest import LEASE_SECONDS, SESSION_TIMEOUT_MS
from tests.reliability.figures import record
from tests.reliability.history import check_history
from tests.reliability.processes import cluster, note, wait_until
from worker.jobs import WORKER_LOST_MESSAGE
from worker.settings import Settings

pytestmark = pytest.mark.kafka

DETECTION_BOUND_SECONDS = SESSION_TIMEOUT_MS / 1000 + LEASE_SECONDS + 12
FENCED = (
    "fenced: another worker owns the job",
    "fenced: the event did not take effect",
    "job taken over by another worker; stopped here without a word",
)


def test_a_thawed_zombie_cannot_overwrite_the_new_owner(
    fault_settings: Settings, tmp_path: Path
) -> None:
    """SIGSTOP A mid-paragraph, B ends the job; after SIGCONT, A's writes change nothing."""
    paragraphs = note(
        "import time\ntime.sleep(3)",
        "open('output/zombie.txt', 'w').write('written by the first owner')",
        "import time\ntime.sleep(1)",
    )
    with cluster(fault_settings, tmp_path) as jobs:
        a, b = jobs.worker("worker-a"), jobs.worker("worker-b")
        a_partitions, _ = jobs.wait_split(a, b)
        job_id = jobs.submit(jobs.job_body(paragraphs), on_partition=min(a_partitions))
        jobs.wait_status(job_id, {"RUNNING"}, within=60)
        a.signal(signal.SIGSTOP)
        stops = 1
        frozen = time.monotonic()
        try:
            ended = jobs.wait_final(job_id, within=DETECTION_BOUND_SECONDS + 30)
            detection = time.monotonic() - frozen
            assert (ended["status"], ended["message"]) == ("FAILED", WORKER_LOST_MESSAGE)
            # Past the first paragraph's end, so A has a result to publish the moment it thaws.
            wait_until(lambda: time.monotonic() - frozen > 3.5, "paragraph end", within=10)
        finally:
            a.signal(signal.SIGCONT)

        wait_until(
            lambda: any(
                line.get("event") in (*FENCED, "jobs handed over to another worker")
                for line in a.lines()
            ),
            "worker A noticing it lost the job",
            within=30,
        )
        # A is live again and rejoins the group; whatever it publishes must not show.
        wait_until(lambda: len(jobs.partitions(a)) > 0 or a.popen.poll() is not None, "A", 30)
        after = jobs.job(job_id)
        report = asyncio.run(
            check_history(
                fault_settings.kafka_bootstrap_servers, fault_settings.events_topic, {job_id}
            )
        )
        events = [line.get("event") for line in a.lines()]
        refused = events.count(FENCED[0])
        dropped = events.count(FENCED[1])
        fenced_logs = sum(events.count(name) for name in FENCED)
        history = report.histories[job_id]
        zombie_epochs = {e.epoch for e in history.fenced}

        assert (after["status"], after["message"]) == ("FAILED", WORKER_LOST_MESSAGE)
        assert report.ok, report.summary()
        assert history.effective[-1].epoch > history.effective[0].epoch, "B wrote at a newer epoch"
        assert fenced_logs + report.fenced_events > 0, "A tried to write and was fenced"
        assert a.popen.poll() is None, "A survived its thaw"
    record(
        "P8",
        "sigstop_then_sigcont",
        jobs_submitted=len(report.histories),
        faults_injected=stops,
        **report.safety(),
        zombie_writes_in_topic=report.fenced_events,
        zombie_writes_refused_before_publishing=refused,
        zombie_writes_seen_dropped=dropped,
        zombie_epochs=",".join(map(str, sorted(zombie_epochs))) or "-",
        detection_seconds=round(detection, 2),
    )
