"""Where the tests' Kafka broker comes from, in order of preference.

1. ``KAFKA_BOOTSTRAP_SERVERS`` when set (CI starts a broker and sets it).
2. A testcontainers Kafka (KRaft) container when a Docker engine answers.
3. The local KRaft broker from ``deploy/kafka``, started on free ports for this session.

There is no fourth option: if none works, the tests that need a broker fail. They never skip.
"""

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KAFKA_DEPLOY = REPO / "deploy" / "kafka"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            subprocess.run(
                ["docker", "info"], capture_output=True, timeout=10, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def _container() -> Iterator[str]:
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer().with_kraft() as kafka:
        yield str(kafka.get_bootstrap_server())


@contextmanager
def _local_broker(data_dir: Path) -> Iterator[str]:
    env = {
        **os.environ,
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_DATA_DIR": str(data_dir),
    }
    started = subprocess.run(
        ["bash", str(KAFKA_DEPLOY / "up.sh")], env=env, capture_output=True, text=True, check=False
    )
    if started.returncode != 0:
        raise RuntimeError(
            f"the local Kafka broker did not start (exit {started.returncode}):\n"
            f"{started.stdout[-4000:]}\n{started.stderr[-4000:]}"
        )
    try:
        yield f"127.0.0.1:{env['KAFKA_PORT']}"
    finally:
        subprocess.run(
            ["bash", str(KAFKA_DEPLOY / "down.sh"), "--purge"], env=env, check=False, timeout=120
        )


@contextmanager
def kafka_broker(data_dir: Path) -> Iterator[str]:
    """Yield a bootstrap address of a running broker for the whole test session."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
    elif _docker_answers():
        with _container() as bootstrap:
            yield bootstrap
    else:
        with _local_broker(data_dir) as bootstrap:
            yield bootstrap
