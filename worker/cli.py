"""The ``jobmanager`` command line."""

import asyncio
import signal
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from adapters.http.auth import mint
from adapters.local_files import LocalHome, checked_id
from schemas.notes import parse_note
from schemas.status import JobStatus
from worker.bootstrap import Roles, run
from worker.cli_options import AsJson, ConfigurationId, InputFolderId, ModelId, OutputFolderId, api
from worker.cli_schedules import schedules
from worker.client import Answer, ApiError, JobManagerClient, token_tenant
from worker.logging import configure_logging
from worker.settings import Settings

app = typer.Typer(
    help="Job Manager: run Zeppelin notes as batch jobs over Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models = typer.Typer(help="Models (Zeppelin notes) in the local store.", no_args_is_help=True)
folders = typer.Typer(help="Data folders in the local store.", no_args_is_help=True)
configurations = typer.Typer(
    help="Environment configurations in the local store.", no_args_is_help=True
)
app.add_typer(models, name="models")
app.add_typer(folders, name="folders")
app.add_typer(configurations, name="configurations")
app.add_typer(schedules, name="schedules")

Tenant = Annotated[str, typer.Option("--tenant", help="Tenant that owns the resource.")]
OptionalId = Annotated[
    str | None, typer.Option("--id", help="Id to use (default: a new random id).")
]


def _serve(roles: Roles) -> None:
    settings = Settings()
    configure_logging(settings)

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await run(settings, roles, stopping)

    asyncio.run(main())


@app.command()
def serve() -> None:
    """Run the gateway, a worker and the scheduler in one process (the embedded default).

    Example: jobmanager serve
    """
    _serve(Roles(gateway=True, worker=True, scheduler=True))


@app.command()
def gateway() -> None:
    """Run only the REST gateway.

    Example: JOBMANAGER_PORT=8081 jobmanager gateway
    """
    _serve(Roles(gateway=True, worker=False, scheduler=False))


@app.command()
def worker() -> None:
    """Run only a worker; several workers share the commands topic as one consumer group.

    Example: jobmanager worker
    """
    _serve(Roles(gateway=False, worker=True, scheduler=False))


@app.command()
def scheduler() -> None:
    """Run only the scheduler: it fires the due times of RUNNING schedules as jobs.

    Several may run; each due time still makes one job (its id comes from the schedule and the due
    time). A restarted scheduler fires the due times it missed once, if they are at most
    JOBMANAGER_SCHEDULE_CATCH_UP_SECONDS old (default 300).

    Example: JOBMANAGER_SCHEDULE_CATCH_UP_SECONDS=3600 jobmanager scheduler
    """
    _serve(Roles(gateway=False, worker=False, scheduler=True))


@app.command()
def token(
    tenant: Tenant = "local",
    hours: Annotated[int, typer.Option(help="Lifetime of the token.")] = 12,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Scope jm.r (reads only) instead of jm.rw.")
    ] = False,
) -> None:
    """Print a bearer token (HS256, scope jm.rw) for local use.

    Example: curl -H "Authorization: Bearer $(jobmanager token)" ...
    """
    secret = Settings().resolved_jwt_secret()
    typer.echo(mint(secret, tenant, read_only=read_only, lifetime_seconds=hours * 3600))


def _home() -> LocalHome:
    return LocalHome(Settings().home)


@models.command("add")
def models_add(
    note: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="A Zeppelin note (.zpln or note.json)."),
    ],
    model_id: OptionalId = None,
    tenant: Tenant = "local",
) -> None:
    """Add a Zeppelin note as a model and print its id.

    Example: jobmanager models add my-note.zpln --id churn
    """
    typer.echo(_home().add_model(tenant, note, model_id))


@folders.command("create")
def folders_create(folder_id: OptionalId = None, tenant: Tenant = "local") -> None:
    """Create a data folder (input or output) and print its id and path.

    Example: jobmanager folders create --id input
    """
    home = _home()
    typer.echo(home.create_folder(tenant, folder_id))


@configurations.command("add")
def configurations_add(
    name: Annotated[str, typer.Option("--name", help="Display name.")],
    configuration_id: OptionalId = None,
    tenant: Tenant = "local",
) -> None:
    """Add an environment configuration and print its id.

    Example: jobmanager configurations add --name local-python --id local
    """
    typer.echo(_home().add_configuration(tenant, name, configuration_id))


# -- client commands: talk to a running gateway over its REST API --------------------------

EXIT_CODES = {JobStatus.SUCCEEDED: 0, JobStatus.FAILED: 1, JobStatus.STOPPED: 2}
EXIT_TIMEOUT = 3
_RETRIED_STATUSES = frozenset({429, 502, 503, 504})  # while watching, these are transient
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_STYLES = {
    "SUCCEEDED": "bold green",
    "FAILED": "bold red",
    "STOPPED": "bold yellow",
    "STOPPING": "yellow",
    "RUNNING": "cyan",
    "STARTING": "blue",
    "SUBMITTED": "blue",
    "FINISHED": "green",
    "ERROR": "red",
    "ABORT": "red",
    "SKIPPED": "dim",
}

JobId = Annotated[str, typer.Argument(help="The job's id.", show_default=False)]


def _console() -> Console:
    return Console(highlight=False)


def _status(status: object) -> Text:
    text = str(status or "-")
    return Text(text, style=_STYLES.get(text, ""))


def _moment(value: object) -> str:
    """``2024-03-05T09:14:02.118Z`` as ``2024-03-05 09:14:02Z``."""
    text = str(value or "")
    return f"{text[:10]} {text[11:19]}Z" if len(text) >= 19 and text[10] == "T" else text


def _show_job(job: Mapping[str, Any]) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    fields = [
        ("id", "id"),
        ("model", "modelId"),
        ("configuration", "configurationId"),
        ("input folder", "inputFolderId"),
        ("output folder", "outputFolderId"),
        ("environment", "environmentId"),
        ("max seconds", "maximumExecutionTimeInSeconds"),
        ("created by", "createdBy"),
    ]
    grid.add_row("status", _status(job.get("status")))
    grid.add_row("message", Text(str(job.get("message") or "-")))
    for label, key in fields:
        grid.add_row(label, Text(str(job.get(key) or "-")))
    grid.add_row("created", Text(_moment(job.get("creationDate"))))
    _console().print(grid)


def _print_job(answer: Answer, as_json: bool) -> None:
    if as_json:
        typer.echo(answer.text)
    else:
        _show_job(answer.data)


@app.command()
def submit(
    model: ModelId,
    configuration: ConfigurationId,
    input_folder: InputFolderId,
    output_folder: OutputFolderId,
    max_seconds: Annotated[
        int, typer.Option("--max-seconds", min=1, help="maximumExecutionTimeInSeconds.")
    ] = 7200,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key", help="Repeating a submit with the same key returns the same job."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Submit a job to the gateway at JOBMANAGER_URL and print it (SUBMITTED).

    Example: jobmanager submit --model churn --configuration local --input in --output out
    """
    request = {
        "modelId": model,
        "configurationId": configuration,
        "inputFolderId": input_folder,
        "outputFolderId": output_folder,
        "maximumExecutionTimeInSeconds": str(max_seconds),
    }
    with api() as client:
        answer = client.submit(request, idempotency_key)
    if answer.status == 200:
        typer.echo("This Idempotency-Key was used before: this is the job it created.", err=True)
    _print_job(answer, as_json)


@app.command()
def get(job_id: JobId, as_json: AsJson = False) -> None:
    """Print a job: status, message, model, configuration, folders, dates.

    Example: jobmanager get 3f2a9c0d1e4b4f6a8b7c6d5e4f3a2b1c --json
    """
    with api() as client:
        answer = client.get(job_id)
    _print_job(answer, as_json)


@app.command("list")
def list_jobs(
    status: Annotated[
        list[JobStatus] | None,
        typer.Option(
            "--status", case_sensitive=False, help="Only jobs in this status (repeatable)."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model's jobs.")] = None,
    configuration: Annotated[
        str | None, typer.Option("--configuration", help="Only this configuration's jobs.")
    ] = None,
    message: Annotated[
        str | None,
        typer.Option("--message", help="Only jobs whose message contains this (case-sensitive)."),
    ] = None,
    page: Annotated[int, typer.Option("--page", min=0, help="Page number, from 0.")] = 0,
    size: Annotated[
        int | None,
        typer.Option("--size", min=1, max=100, help="Jobs per page (the API's default: 100)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List jobs, newest first, filtered by status, model, configuration or message.

    A narrow terminal leaves the model and configuration columns out; --json has everything.

    Example: jobmanager list --status FAILED --status STOPPED --message Error --size 20
    """
    job_filter: dict[str, Any] = {}
    if status:
        chosen = sorted({s.value for s in status})
        job_filter["status"] = chosen[0] if len(chosen) == 1 else {"in": chosen}
    if model is not None:
        job_filter["modelId"] = model
    if configuration is not None:
        job_filter["configurationId"] = configuration
    if message is not None:
        job_filter["message"] = {"contains": message}
    with api() as client:
        answer = client.list_jobs(job_filter, page, size)
    if as_json:
        typer.echo(answer.text)
        return
    body: Mapping[str, Any] = answer.data
    jobs = body.get("content") or []
    console = _console()
    if jobs:
        console.print(_jobs_table(jobs, console.width))
    total = body.get("totalElements", len(jobs))
    pages = body.get("totalPages", 1)
    console.print(
        Text(f"{len(jobs)} of {total} jobs, page {body.get('number', page)} of 0..{pages - 1}.")
        if pages > 1
        else Text(f"{len(jobs)} of {total} jobs."),
        style="dim",
    )


def _short(value: object) -> str:
    text = str(value or "")
    return text if len(text) <= 9 else text[:8] + "…"


def _jobs_table(jobs: list[Mapping[str, Any]], width: int) -> Table:
    """id, status, model, configuration, created, message, fitted to ``width``.

    The job id stays whole (the other commands take it); when space is tight the model and
    configuration ids are cut short, then left out (``get`` and ``--json`` show them whole).
    """

    def cell(key: str) -> Callable[[Mapping[str, Any]], str]:
        return lambda job: str(job.get(key) or "")

    def created(job: Mapping[str, Any]) -> str:
        return _moment(job.get("creationDate"))

    def short(key: str) -> Callable[[Mapping[str, Any]], str]:
        return lambda job: _short(job.get(key))

    fixed = [("id", cell("id")), ("status", cell("status"))]
    layouts = [  # the fixed columns' getters and the message room each layout wants
        ([*fixed, ("model", cell("modelId")), ("configuration", cell("configurationId"))], 40),
        ([*fixed, ("model", short("modelId")), ("configuration", short("configurationId"))], 24),
        (fixed, 0),
    ]
    for columns, message_room in layouts:
        used = sum(max([len(name), *(len(get(job)) for job in jobs)]) + 2 for name, get in columns)
        if used + 22 + message_room <= width:  # 22: the created column and its gap
            break
    table = Table(
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True
    )
    for name, _ in columns:
        table.add_column(name, no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("message", overflow="fold", ratio=1)
    for job in jobs:
        values = [Text(get(job)) for _, get in columns]
        values[1] = _status(job.get("status"))
        table.add_row(*values, Text(created(job)), Text(str(job.get("message") or "")))
    return table


@app.command()
def stop(job_id: JobId, as_json: AsJson = False) -> None:
    """Ask the worker to stop a job and print it (STOPPING, then STOPPED once stopped).

    Example: jobmanager stop 3f2a9c0d1e4b4f6a8b7c6d5e4f3a2b1c
    """
    with api() as client:
        answer = client.stop(job_id)
    _print_job(answer, as_json)


def _paragraph_total(client: JobManagerClient, model_id: str) -> int | None:
    """How many paragraphs the job will run, when the note is in the local store; else None.

    The API does not tell; the local store is read only for a gateway on this machine.
    """
    if urllib.parse.urlsplit(client.url).hostname not in _LOCAL_HOSTS:
        return None
    try:
        home = LocalHome(Settings().home)
        note_file = home.model_file(token_tenant(client.token), checked_id(model_id))
        note = parse_note(note_file.read_bytes())
    except (OSError, ValueError):  # no local note, or an unusable one: show the count only
        return None
    return sum(1 for paragraph in note.paragraphs if paragraph.enabled) or None


def _watch_view(
    job: Mapping[str, Any], paragraphs: list[Mapping[str, Any]], total: int | None
) -> RenderableType:
    done = len(paragraphs)
    progress = Table.grid(padding=(0, 1))
    if total is not None and done <= total:
        progress.add_row(ProgressBar(total=total, completed=done, width=30), f"{done}/{total}")
    else:
        progress.add_row(f"{done} finished")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("job", Text(str(job.get("id", ""))))
    grid.add_row("status", _status(job.get("status")))
    grid.add_row("message", Text(str(job.get("message") or "-")))
    grid.add_row("paragraphs", progress)
    if paragraphs:
        last = paragraphs[-1]
        grid.add_row(
            "last", Text.assemble(str(last.get("label", "")), " ", _status(last.get("status")))
        )
    return grid


def _poll(call: Callable[[str], Answer], job_id: str) -> Any | None:
    """One read while watching; None when the gateway is busy or restarting (retry later)."""
    try:
        return call(job_id).data
    except ApiError as error:
        if error.status in _RETRIED_STATUSES:
            return None
        raise


@app.command()
def watch(
    job_id: JobId,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="Seconds between polls.")
    ] = 0.5,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, help="Give up after this many seconds (exit 3)."),
    ] = None,
) -> None:
    """Follow a job live until it ends: status, message, finished paragraphs.

    Exit code: 0 SUCCEEDED, 1 FAILED (or an error), 2 STOPPED, 3 when --timeout passed first.

    Example: jobmanager watch 3f2a9c0d1e4b4f6a8b7c6d5e4f3a2b1c --timeout 600
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    console = _console()
    job: Mapping[str, Any] = {}
    timed_out = False
    with api() as client:
        job = client.get(job_id).data
        total = _paragraph_total(client, str(job.get("modelId", "")))
        paragraphs: list[Mapping[str, Any]] = []
        try:
            # Transient: the final view is printed once below, on terminals and in files alike.
            with Live(
                _watch_view(job, paragraphs, total),
                console=console,
                refresh_per_second=8,
                transient=True,
            ) as live:
                while True:
                    # The job first: paragraphs read after it include all it has finished.
                    job = _poll(client.get, job_id) or job
                    finished = _poll(client.paragraphs, job_id)
                    if finished is not None:
                        paragraphs = list(finished.get("paragraphs") or [])
                    live.update(_watch_view(job, paragraphs, total))
                    if job.get("status") in EXIT_CODES:
                        break
                    if deadline is not None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            timed_out = True
                            break
                        time.sleep(min(interval, left))
                    else:
                        time.sleep(interval)
        except KeyboardInterrupt:
            typer.echo(f"Stopped watching; job {job_id} goes on.", err=True)
            raise typer.Exit(130) from None
    console.print(_watch_view(job, paragraphs, total))
    status = str(job.get("status"))
    if timed_out:
        typer.echo(f"Timed out after {timeout:g} s: job {job_id} is still {status}.", err=True)
        raise typer.Exit(EXIT_TIMEOUT)
    line = Text.assemble(f"Job {job_id} ", _status(status))
    if job.get("message"):
        line.append(f": {job['message']}")
    console.print(line, soft_wrap=True)
    raise typer.Exit(EXIT_CODES[JobStatus(status)])


@app.command()
def logs(
    job_id: JobId,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Also print Python tracebacks of failures.")
    ] = False,
) -> None:
    """Print each finished paragraph of a job: label, status, output and error.

    Example: jobmanager logs 3f2a9c0d1e4b4f6a8b7c6d5e4f3a2b1c --traceback
    """
    with api() as client:
        body: Mapping[str, Any] = client.paragraphs(job_id).data
    console = _console()
    paragraphs = body.get("paragraphs") or []
    heading = Text.assemble(f"Job {job_id} ", _status(body.get("status")))
    heading.append(f", {len(paragraphs)} paragraph(s) finished", style="dim")
    console.print(heading, soft_wrap=True)
    for paragraph in paragraphs:
        console.print()
        index = paragraph.get("index")
        number = f"#{index + 1} " if isinstance(index, int) else ""
        title = Text.assemble((number, "dim"), (str(paragraph.get("label", "")), "bold"), "  ")
        title.append_text(_status(paragraph.get("status")))
        if paragraph.get("interpreter"):
            title.append(f"  %{paragraph['interpreter']}", style="dim")
        console.print(title, soft_wrap=True)
        output = str(paragraph.get("output") or "").rstrip("\n")
        if output:
            console.print(Text(output), soft_wrap=True)
        if paragraph.get("error"):
            console.print(Text(f"error: {paragraph['error']}", style="red"), soft_wrap=True)
        if traceback and paragraph.get("traceback"):
            console.print(Text(str(paragraph["traceback"]).rstrip("\n")), soft_wrap=True)
