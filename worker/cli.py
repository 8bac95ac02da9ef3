"""The ``jobmanager`` command line."""

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from adapters.http.auth import mint
from adapters.local_files import LocalHome
from worker.bootstrap import Roles, run
from worker.logging import configure_logging
from worker.settings import Settings

app = typer.Typer(
    help="Job Manager: run Zeppelin notes as batch jobs over Kafka.", no_args_is_help=True
)
models = typer.Typer(help="Models (Zeppelin notes) in the local store.", no_args_is_help=True)
folders = typer.Typer(help="Data folders in the local store.", no_args_is_help=True)
configurations = typer.Typer(
    help="Environment configurations in the local store.", no_args_is_help=True
)
app.add_typer(models, name="models")
app.add_typer(folders, name="folders")
app.add_typer(configurations, name="configurations")

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
    """Run the gateway and a worker in one process (the embedded default).

    Example: jobmanager serve
    """
    _serve(Roles(gateway=True, worker=True))


@app.command()
def gateway() -> None:
    """Run only the REST gateway.

    Example: JOBMANAGER_PORT=8081 jobmanager gateway
    """
    _serve(Roles(gateway=True, worker=False))


@app.command()
def worker() -> None:
    """Run only a worker; several workers share the commands topic as one consumer group.

    Example: jobmanager worker
    """
    _serve(Roles(gateway=False, worker=True))


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
