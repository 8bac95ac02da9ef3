"""Models, data folders and environment configurations on the local disk.

Layout under ``JOBMANAGER_HOME``::

    tenants/<tenant>/models/<modelId>.zpln
    tenants/<tenant>/folders/<folderId>/
    tenants/<tenant>/configurations/<configurationId>.json
    workspaces/<jobId>/{input,output}/
"""

import asyncio
import json
import shutil
import uuid
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from adapters.ports import Environment, NotFound
from schemas.jobs import EnvironmentConfiguration, ResourceId
from schemas.notes import Note, parse_note

_RESOURCE_ID: TypeAdapter[str] = TypeAdapter(ResourceId)


def checked_id(value: str | None) -> str:
    """A caller's id, refused unless it is path-safe; a new random one when absent."""
    if value is None:
        return uuid.uuid4().hex
    try:
        return _RESOURCE_ID.validate_python(value)
    except ValidationError:
        raise ValueError(
            f"invalid id {value!r}: use letters, digits, '.', '_' or '-' (at most 128)"
        ) from None


class LocalHome:
    """Paths of the local layout, and the helpers the CLI uses to fill it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def tenant(self, tenant: str) -> Path:
        return self.root / "tenants" / checked_id(tenant)

    def model_file(self, tenant: str, model_id: str) -> Path:
        return self.tenant(tenant) / "models" / f"{model_id}.zpln"

    def folder(self, tenant: str, folder_id: str) -> Path:
        return self.tenant(tenant) / "folders" / folder_id

    def configuration_file(self, tenant: str, configuration_id: str) -> Path:
        return self.tenant(tenant) / "configurations" / f"{configuration_id}.json"

    def workspace(self, job_id: str) -> Path:
        return self.root / "workspaces" / job_id

    def add_model(self, tenant: str, note_file: Path, model_id: str | None = None) -> str:
        """Copy a note into the store after checking that it parses."""
        raw = note_file.read_bytes()
        parse_note(raw)
        model_id = checked_id(model_id)
        target = self.model_file(tenant, model_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(raw)
        return model_id

    def create_folder(self, tenant: str, folder_id: str | None = None) -> str:
        folder_id = checked_id(folder_id)
        self.folder(tenant, folder_id).mkdir(parents=True, exist_ok=True)
        return folder_id

    def add_configuration(
        self, tenant: str, name: str, configuration_id: str | None = None, engine: str = "local"
    ) -> str:
        configuration_id = checked_id(configuration_id)
        target = self.configuration_file(tenant, configuration_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"name": name, "engine": engine}, indent=2) + "\n")
        return configuration_id


class LocalModelStore:
    def __init__(self, home: LocalHome) -> None:
        self._home = home

    async def load_note(self, tenant: str, model_id: str) -> Note:
        path = self._home.model_file(tenant, model_id)
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"model {model_id} not found") from None
        except OSError as unreadable:
            raise NotFound(f"model {model_id} cannot be read ({unreadable.strerror})") from None
        return parse_note(raw)


class LocalFolderStore:
    def __init__(self, home: LocalHome) -> None:
        self._home = home

    async def exists(self, tenant: str, folder_id: str) -> bool:
        return await asyncio.to_thread(self._home.folder(tenant, folder_id).is_dir)

    async def download(self, tenant: str, folder_id: str, destination: Path) -> None:
        source = self._home.folder(tenant, folder_id)
        if not await self.exists(tenant, folder_id):
            raise NotFound(f"input folder {folder_id} not found")
        await asyncio.to_thread(shutil.copytree, source, destination, dirs_exist_ok=True)

    async def upload(self, source: Path, tenant: str, folder_id: str) -> None:
        destination = self._home.folder(tenant, folder_id)
        if not await self.exists(tenant, folder_id):
            raise NotFound(f"output folder {folder_id} not found")
        await asyncio.to_thread(shutil.copytree, source, destination, dirs_exist_ok=True)


class LocalEnvironmentProvider:
    """Environments are workspaces on this machine: ``input/`` and ``output/`` under one folder."""

    def __init__(self, home: LocalHome) -> None:
        self._home = home

    async def configuration(self, tenant: str, configuration_id: str) -> EnvironmentConfiguration:
        path = self._home.configuration_file(tenant, configuration_id)
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"configuration {configuration_id} not found") from None
        except OSError as unreadable:
            raise NotFound(
                f"configuration {configuration_id} cannot be read ({unreadable.strerror})"
            ) from None
        try:
            fields = json.loads(raw)
            if not isinstance(fields, dict):
                raise ValueError("expected a JSON object")
            return EnvironmentConfiguration.model_validate({**fields, "id": configuration_id})
        except (ValueError, ValidationError) as invalid:
            raise NotFound(f"configuration {configuration_id} is not valid: {invalid}") from None

    async def start(self, job_id: str, configuration: EnvironmentConfiguration) -> Environment:
        workspace = self._home.workspace(job_id)
        await asyncio.to_thread(self._fresh_workspace, workspace)
        return Environment(id=f"local-{job_id}", workspace=workspace)

    async def stop(self, environment: Environment) -> None:
        await asyncio.to_thread(shutil.rmtree, environment.workspace, ignore_errors=True)

    @staticmethod
    def _fresh_workspace(workspace: Path) -> None:
        # A workspace left by a crashed run must not leak its files into this one.
        shutil.rmtree(workspace, ignore_errors=True)
        (workspace / "input").mkdir(parents=True)
        (workspace / "output").mkdir()
