"""P9: SIGTERM finishes what it can within the grace period and hands the rest over.

Workers A and B share the two partitions; three jobs land on A's: S (a short paragraph, done
within the grace period), L (a long paragraph) and Q (queued behind L for the same environment,
``whenBusy: queue``, so still SUBMITTED). A gets SIGTERM with L and S running: it finishes S,
stops waiting at the end of its grace period, hands L and Q over (no word published for them)
and leaves the group, so B gets the partition at once (no session timeout). B ends L FAILED
"worker lost" (it had begun on A) and runs Q, which nobody had begun, to SUCCEEDED.
"""

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from adapters.local_files import LocalHome
from tests.reliability.conftest import LEASE_SECONDS
from tests.reliability.figures import record
from tests.reliability.history import check_history
from tests.reliability.processes import TENANT, cluster, note
from worker.jobs import SUCCEEDED_MESSAGE, WORKER_LOST_MESSAGE
from worker.settings import Settings

pytestmark = pytest.mark.kafka

GRACE_SECONDS = 4
# After the grace period: A's exit and B's rebalance (no session timeout: A leaves the group),
# the lease of the jobs A handed over, and Q's run (~2 s here), with room for a loaded machine.
HANDOVER_BOUND_SECONDS = GRACE_SECONDS + LEASE_SECONDS + 12


def test_sigterm_finishes_or_hands_over_every_job(fault_settings: Settings, tmp_path: Path) -> None:
    """SIGTERM: S ends on A, L and Q move to B; all final within the bound; A exits 0."""
    with cluster(fault_settings, tmp_path) as jobs:
        a = jobs.worker("worker-a", JOBMANAGER_SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS))
        b = jobs.worker("worker-b")
        a_partitions, _ = jobs.wait_split(a, b)
        on_a = min(a_partitions)
        short = jobs.submit(jobs.job_body(note("import time\ntime.sleep(2)")), on_partition=on_a)
        long_body = jobs.job_body(note("import time\ntime.sleep(60)"))
        configuration = LocalHome(fault_settings.home).configuration_file(
            TENANT, long_body["configurationId"]
        )
        configuration.write_text(
            json.dumps({"name": "shared", "engine": "local", "whenBusy": "queue"})
        )
        long = jobs.submit(long_body, on_partition=on_a)
        queued_body = jobs.job_body(note("open('output/q.txt', 'w').write('q')"))
        queued_body["configurationId"] = long_body["configurationId"]
        queued = jobs.submit(queued_body, on_partition=on_a)
        for job_id in (short, long):
            jobs.wait_status(job_id, {"RUNNING"}, within=60)
        assert jobs.job(queued)["status"] == "SUBMITTED"

        a.signal(signal.SIGTERM)
        terms = 1
        terminated = time.monotonic()
        finals = {
            job_id: jobs.wait_final(job_id, within=HANDOVER_BOUND_SECONDS + 30)
            for job_id in (short, long, queued)
        }
        handover = time.monotonic() - terminated
        exit_code = a.wait_exit(30)
        report = asyncio.run(
            check_history(
                fault_settings.kafka_bootstrap_servers,
                fault_settings.events_topic,
                {short, long, queued},
            )
        )

        assert exit_code == 0, a.text()[-3000:]
        assert (finals[short]["status"], finals[short]["message"]) == (
            "SUCCEEDED",
            SUCCEEDED_MESSAGE,
        )
        assert (finals[long]["status"], finals[long]["message"]) == ("FAILED", WORKER_LOST_MESSAGE)
        assert finals[queued]["status"] == "SUCCEEDED"
        assert handover < HANDOVER_BOUND_SECONDS, f"took {handover:.1f} s"
        assert report.ok, report.summary()
        epochs = {j: {e.epoch for e in report.histories[j].effective} for j in finals}
        assert len(epochs[short]) == 1, "S was finished by A alone"
        assert len(epochs[queued]) == 2, "Q was created by A and run by B"
    record(
        "P9",
        "sigterm_with_running_and_queued_jobs",
        jobs_submitted=len(finals),
        faults_injected=terms,
        **report.safety(),
        grace_seconds=GRACE_SECONDS,
        sigterm_to_all_final_seconds=round(handover, 2),
        finished_by_leaving_worker=sum(len(e) == 1 for e in epochs.values()),
        handed_over=sum(len(e) > 1 for e in epochs.values()),
    )
