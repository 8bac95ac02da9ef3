"""What the job and schedule commands share: the gateway client and the options of a job.

A schedule fires jobs, so ``schedules create`` takes a job's model, configuration and folders
under the same flags and help as ``submit``.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from worker.client import ClientError, JobManagerClient

AsJson = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON answer as it is, for scripts.")
]
ModelId = Annotated[str, typer.Option("--model", help="Model (note) id.", show_default=False)]
ConfigurationId = Annotated[
    str, typer.Option("--configuration", help="Configuration id.", show_default=False)
]
InputFolderId = Annotated[str, typer.Option("--input", help="Input folder id.", show_default=False)]
OutputFolderId = Annotated[
    str, typer.Option("--output", help="Output folder id.", show_default=False)
]


@contextmanager
def api() -> Iterator[JobManagerClient]:
    """A client for the configured gateway; its failures become one line on stderr, exit 1."""
    try:
        yield JobManagerClient.from_config()
    except ClientError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
