"""Messages on ``jobmanager.environments``: claims on a configuration's one environment.

Keyed by ``<tenant>/<configurationId>``, so all claims on one configuration are totally ordered
in one partition: the first unreleased claim holds the environment, the others queue behind it.
"""

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.jobs import CamelModel, Timestamp


class EnvironmentClaimed(CamelModel):
    """A job asked for its configuration's environment (at most one claim per job counts)."""

    schema_version: Literal[1] = 1
    type: Literal["EnvironmentClaimed"] = "EnvironmentClaimed"
    tenant: str
    configuration_id: str
    job_id: str
    occurred_at: Timestamp


class EnvironmentReleased(CamelModel):
    """The job no longer holds or waits for the environment."""

    schema_version: Literal[1] = 1
    type: Literal["EnvironmentReleased"] = "EnvironmentReleased"
    tenant: str
    configuration_id: str
    job_id: str
    occurred_at: Timestamp


EnvironmentMessage = Annotated[
    EnvironmentClaimed | EnvironmentReleased, Field(discriminator="type")
]
ENVIRONMENT_MESSAGES: TypeAdapter[EnvironmentMessage] = TypeAdapter(EnvironmentMessage)


def lock_key(tenant: str, configuration_id: str) -> str:
    return f"{tenant}/{configuration_id}"
