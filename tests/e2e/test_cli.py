"""The client commands of ``jobmanager`` against a live stack: real broker, gateway and worker."""

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES
from tests.kafka_broker import free_port
from tests.service import JOBMANAGER, Service, running_service
from worker.settings import Settings

NOTES = FIXTURES / "notes"
CALL_SECONDS = 60  # deadline of one CLI call
WATCH_SECONDS = 90  # deadline a `watch` gives itself; the call's own deadline is longer
COMMANDS = [
    ["serve"],
    ["gateway"],
    ["worker"],
    ["token"],
    ["models", "add"],
    ["folders", "create"],
    ["configurations", "add"],
    ["submit"],
    ["get"],
    ["list"],
    ["stop"],
    ["watch"],
    ["logs"],
    ["scheduler"],
    ["schedules", "create"],
    ["schedules", "list"],
    ["schedules", "get"],
    ["schedules", "start"],
    ["schedules", "stop"],
    ["schedules", "delete"],
]


def _cli(
    env: dict[str, str], *args: str, timeout: float = CALL_SECONDS
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(JOBMANAGER), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _watch(env: dict[str, str], job_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return _cli(
        env,
        "watch",
        job_id,
        "--interval",
        "0.2",
        *(extra or ("--timeout", str(WATCH_SECONDS))),
        timeout=WATCH_SECONDS + 30,
    )


@pytest.fixture
def service(settings: Settings, tmp_path: Path) -> Iterator[Service]:
    with running_service(settings, tmp_path / "serve.log") as running:
        yield running


@pytest.fixture
def env(service: Service, tmp_path: Path) -> dict[str, str]:
    """The service's environment (its JWT secret: the CLI mints its token) and its URL."""
    return {
        **service.env,
        "JOBMANAGER_URL": service.url,
        "XDG_CONFIG_HOME": str(tmp_path / "no-config"),  # never the developer's config file
        "COLUMNS": "250",
        "NO_COLOR": "1",
    }


def _note(tmp_path: Path, name: str, *paragraphs: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.zpln"
    path.write_text(json.dumps({"name": name, "paragraphs": list(paragraphs)}))
    return path


def _submit(service: Service, env: dict[str, str], note: Path) -> str:
    """Submit ``note`` with the CLI, on a configuration of its own (one running job each)."""
    done = _cli(
        env,
        "submit",
        "--model",
        service.cli("models", "add", str(note)),
        "--configuration",
        service.cli("configurations", "add", "--name", "cli"),
        "--input",
        service.cli("folders", "create"),
        "--output",
        service.cli("folders", "create"),
        "--max-seconds",
        "600",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "SUBMITTED"
    assert job["maximumExecutionTimeInSeconds"] == "600"
    return str(job["id"])


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_of_every_command(command: list[str], tmp_path: Path) -> None:
    """Every command's --help works, exits 0 and shows an example."""
    done = _cli({**_plain_env(tmp_path), "COLUMNS": "200"}, *command, "--help")

    assert done.returncode == 0, done.stderr
    assert "Example:" in done.stdout
    assert "Usage: jobmanager " + " ".join(command) in done.stdout


def test_unreachable_gateway_is_one_clear_line(tmp_path: Path) -> None:
    """Connection refused: exit 1 and a message naming the URL, no traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    done = _cli({**_plain_env(tmp_path), "JOBMANAGER_URL": url}, "list")

    assert done.returncode == 1
    assert url in done.stderr
    assert "connection refused" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.kafka
def test_submit_then_watch_succeeds(service: Service, env: dict[str, str]) -> None:
    """submit prints the SUBMITTED job; get shows it; watch follows it to SUCCEEDED, exit 0."""
    job_id = _submit(service, env, NOTES / "success.zpln")

    shown = _cli(env, "get", job_id)
    watched = _watch(env, job_id)

    assert shown.returncode == 0, shown.stderr
    assert job_id in shown.stdout
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "SUCCEEDED" in watched.stdout
    assert "5/5" in watched.stdout, "finished paragraphs against the local note's count"


@pytest.mark.kafka
def test_watch_failing_note_exits_1(service: Service, env: dict[str, str]) -> None:
    """watch ends with exit code 1 and the FAILED status for a note whose paragraph raises."""
    job_id = _submit(service, env, NOTES / "failing.zpln")

    watched = _watch(env, job_id)

    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert "FAILED" in watched.stdout
    assert "Divide" in watched.stdout


@pytest.mark.kafka
def test_timeout_stop_and_stopped(service: Service, env: dict[str, str], tmp_path: Path) -> None:
    """watch --timeout exits 3 on a slow job; stop prints STOPPING; watch then exits 2."""
    slow = _note(tmp_path, "slow", {"text": "%python\nimport time\ntime.sleep(60)"})
    job_id = _submit(service, env, slow)
    token = service.cli("token")
    service.wait_for_status(job_id, token, {"RUNNING"})

    timed_out = _watch(env, job_id, "--timeout", "1")
    stopping = _cli(env, "stop", job_id)
    stopped = _watch(env, job_id)

    assert timed_out.returncode == 3, timed_out.stdout + timed_out.stderr
    assert "RUNNING" in timed_out.stderr
    assert stopping.returncode == 0, stopping.stderr
    assert "STOPPING" in stopping.stdout
    assert stopped.returncode == 2, stopped.stdout + stopped.stderr
    assert "STOPPED" in stopped.stdout


@pytest.mark.kafka
def test_list_shows_the_job_and_json_parses(service: Service, env: dict[str, str]) -> None:
    """list shows the submitted job in its table; list --json is the API's page."""
    job_id = _submit(service, env, NOTES / "success.zpln")

    table = _cli(env, "list")
    raw = _cli(env, "list", "--json", "--size", "5")

    assert table.returncode == 0, table.stderr
    assert job_id in table.stdout
    assert raw.returncode == 0, raw.stderr
    page = json.loads(raw.stdout)
    assert job_id in [job["id"] for job in page["content"]]
    assert page["size"] == 5
    _watch(env, job_id)  # let the job end before the service stops


@pytest.mark.kafka
def test_list_status_filters(service: Service, env: dict[str, str]) -> None:
    """list --status FAILED lists the failed job and not the succeeded one."""
    failed = _submit(service, env, NOTES / "failing.zpln")
    succeeded = _submit(service, env, NOTES / "success.zpln")
    assert _watch(env, failed).returncode == 1
    assert _watch(env, succeeded).returncode == 0

    raw = _cli(env, "list", "--status", "FAILED", "--json")
    table = _cli(env, "list", "--status", "failed")
    either = _cli(env, "list", "--status", "FAILED", "--status", "SUCCEEDED", "--json")

    assert raw.returncode == 0, raw.stderr
    assert [job["id"] for job in json.loads(raw.stdout)["content"]] == [failed]
    assert table.returncode == 0, table.stderr
    assert failed in table.stdout
    assert succeeded not in table.stdout
    assert {job["id"] for job in json.loads(either.stdout)["content"]} == {failed, succeeded}


@pytest.mark.kafka
def test_logs_show_the_failing_paragraph(service: Service, env: dict[str, str]) -> None:
    """logs prints each paragraph; the "Divide" one shows ERROR and its ZeroDivisionError."""
    job_id = _submit(service, env, NOTES / "failing.zpln")
    assert _watch(env, job_id).returncode == 1

    done = _cli(env, "logs", job_id)

    assert done.returncode == 0, done.stderr
    divide = done.stdout[done.stdout.index("Divide") :]
    assert divide.splitlines()[0].split()[-2:] == ["ERROR", "%python"]
    assert "ZeroDivisionError" in divide
    assert "Write after" in done.stdout


@pytest.mark.kafka
def test_get_unknown_id_prints_the_api_error(env: dict[str, str]) -> None:
    """get of an unknown id exits 1 with `error <code>: <message> (logref <id>)` on stderr."""
    done = _cli(env, "get", "no-such-job")

    assert done.returncode == 1
    assert done.stderr.startswith("error jobmanager.notFound: job no-such-job not found (logref ")
    assert "Traceback" not in done.stderr


@pytest.mark.kafka
def test_url_and_token_from_the_config_file(
    service: Service, env: dict[str, str], tmp_path: Path
) -> None:
    """Without JOBMANAGER_URL or a local secret, url and token come from config.toml."""
    config = tmp_path / "xdg" / "jobmanager" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'url = "{service.url}"\ntoken = "{service.cli("token")}"\n')
    bare = {k: v for k, v in env.items() if k not in ("JOBMANAGER_URL", "JOBMANAGER_JWT_SECRET")}
    bare["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    bare["JOBMANAGER_HOME"] = str(tmp_path / "empty-home")  # no jwt-secret to mint with

    done = _cli(bare, "list", "--json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["content"] == []


def _plain_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no Job Manager settings and no config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBMANAGER_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")
    env["JOBMANAGER_HOME"] = str(tmp_path / "home")
    return env
