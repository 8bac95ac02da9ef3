"""``jobmanager schedules ...``: the schedule calls of a running gateway, from the shell.

URL and token are found as for the job commands (see :mod:`worker.client`).
"""

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from worker.cli_options import AsJson, ConfigurationId, InputFolderId, ModelId, OutputFolderId, api
from worker.client import Answer

schedules = typer.Typer(
    help="Schedules: jobs fired on a cron line, over the gateway's REST API.",
    no_args_is_help=True,
)

ScheduleId = Annotated[str, typer.Argument(help="The schedule's id.", show_default=False)]


class Overlap(StrEnum):
    SKIP = "skip"
    QUEUE = "queue"
    ALLOW = "allow"


class Status(StrEnum):
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


def _show(answer: Answer, as_json: bool) -> None:
    if as_json:
        typer.echo(answer.text)
        return
    schedule: Mapping[str, Any] = answer.data
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
    for label, key in (
        ("id", "id"),
        ("name", "name"),
        ("status", "status"),
        ("schedule", "scheduleString"),
        ("time zone", "timezone"),
        ("overlap", "overlapPolicy"),
        ("model", "modelId"),
        ("configuration", "configurationId"),
        ("input", "inputFolderId"),
        ("output", "outputFolderId"),
        ("time limit (s)", "maximumExecutionTime"),
        ("created", "creationDate"),
    ):
        table.add_row(label, str(schedule.get(key, "")))
    table.add_row("next", ", ".join(schedule.get("nextFireTimes") or []) or "-")
    Console(highlight=False).print(table)


@schedules.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Display name.", show_default=False)],
    cron: Annotated[
        str,
        typer.Option(
            "--cron",
            help="5-field cron or Quartz 6/7-field cron, e.g. '0 2 * * *' or '0 0/15 * * * ?'.",
            show_default=False,
        ),
    ],
    model: ModelId,
    configuration: ConfigurationId,
    input_folder: InputFolderId,
    output_folder: OutputFolderId,
    timezone: Annotated[str, typer.Option("--timezone", help="IANA time zone.")] = "UTC",
    overlap: Annotated[
        Overlap, typer.Option("--overlap", help="While the previous job runs: skip, queue, allow.")
    ] = Overlap.SKIP,
    max_seconds: Annotated[
        int, typer.Option("--max-seconds", min=1, help="maximumExecutionTime of each job.")
    ] = 7200,
    start: Annotated[bool, typer.Option("--start", help="Start it at once.")] = False,
    as_json: AsJson = False,
) -> None:
    """Create a schedule (STOPPED unless --start) and print its id.

    Example: jobmanager schedules create --name nightly --cron '0 2 * * *'
    --timezone Europe/Berlin --model churn --configuration local --input in --output out --start
    """
    body = {
        "name": name,
        "scheduleString": cron,
        "timezone": timezone,
        "overlapPolicy": overlap.value,
        "modelId": model,
        "configurationId": configuration,
        "inputFolderId": input_folder,
        "outputFolderId": output_folder,
        "maximumExecutionTime": max_seconds,
    }
    with api() as client:
        answer = client.schedules("POST", body=body)
        if start:
            answer = client.schedules("POST", answer.data["id"], "start")
    if as_json:
        typer.echo(answer.text)
    else:
        typer.echo(answer.data["id"])


@schedules.command("list")
def list_schedules(
    status: Annotated[
        Status | None, typer.Option("--status", case_sensitive=False, help="Only this status.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List the schedules, newest first, with their next due time.

    Example: jobmanager schedules list --status RUNNING
    """
    query = {"filter": f'{{"status":"{status.value}"}}'} if status else {}
    with api() as client:
        answer = client.schedules("GET", query=query)
    if as_json:
        typer.echo(answer.text)
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    # Ids and statuses are what people copy and scan, so only the free-text columns fold.
    table.add_column("id", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("name", "schedule", "next"):
        table.add_column(column, overflow="fold", min_width=8)
    for schedule in answer.data.get("schedules") or []:
        upcoming = schedule.get("nextFireTimes") or ["-"]
        table.add_row(
            schedule["id"],
            schedule["status"],
            schedule["name"],
            f"{schedule['scheduleString']} ({schedule['timezone']})",
            upcoming[0],
        )
    Console(highlight=False).print(table)


@schedules.command("get")
def get(schedule_id: ScheduleId, as_json: AsJson = False) -> None:
    """Print a schedule, with its next five due times while RUNNING.

    Example: jobmanager schedules get 5e2f8b1a7c344d69a0e12b9c6d4f8a37
    """
    with api() as client:
        _show(client.schedules("GET", schedule_id), as_json)


@schedules.command("start")
def start(schedule_id: ScheduleId, as_json: AsJson = False) -> None:
    """Start firing the schedule's due times.

    Example: jobmanager schedules start 5e2f8b1a7c344d69a0e12b9c6d4f8a37
    """
    with api() as client:
        _show(client.schedules("POST", schedule_id, "start"), as_json)


@schedules.command("stop")
def stop(schedule_id: ScheduleId, as_json: AsJson = False) -> None:
    """Stop firing the schedule's due times (running jobs go on).

    Example: jobmanager schedules stop 5e2f8b1a7c344d69a0e12b9c6d4f8a37
    """
    with api() as client:
        _show(client.schedules("POST", schedule_id, "stop"), as_json)


@schedules.command("delete")
def delete(schedule_id: ScheduleId) -> None:
    """Delete a schedule; the jobs it fired stay.

    Example: jobmanager schedules delete 5e2f8b1a7c344d69a0e12b9c6d4f8a37
    """
    with api() as client:
        client.schedules("DELETE", schedule_id)
    typer.echo(f"deleted {schedule_id}")
