"""Read-only view of a job's local data folders for the web UI: list the files, download one.

Only for the local stores (``JOBMANAGER_STORES=local``), where folders are directories of this
machine; the tenant is the caller's, so another tenant's folder is never reachable. A file is
served only when its real path lies inside the folder, so ``..`` and symbolic links cannot
lead out of it, and always as a download, so a stored HTML file never runs as this origin.
"""

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from adapters.http.errors import ApiError
from schemas.jobs import ResourceId, format_timestamp

#: Files listed at most per folder; the answer says when there were more.
MAX_LISTED_FILES = 1000

_FOLDER_ID: TypeAdapter[str] = TypeAdapter(ResourceId)


class FolderPaths(Protocol):
    """Where a tenant's folder lives (``adapters.local_files.LocalHome`` is one)."""

    def folder(self, tenant: str, folder_id: str) -> Path: ...


@dataclass(frozen=True, slots=True)
class LocalFolders:
    paths: FolderPaths

    def directory(self, tenant: str, folder_id: str) -> Path:
        try:
            _FOLDER_ID.validate_python(folder_id)
        except ValidationError:
            raise ApiError(404, f"folder {folder_id} not found") from None
        directory = self.paths.folder(tenant, folder_id)
        if not directory.is_dir():
            raise ApiError(404, f"folder {folder_id} not found")
        return directory

    async def listing(self, tenant: str, folder_id: str) -> dict[str, Any]:
        directory = self.directory(tenant, folder_id)
        files, more = await asyncio.to_thread(_walk, directory)
        return {"folderId": folder_id, "files": files, "truncated": more}

    def file(self, tenant: str, folder_id: str, relative: str) -> Path:
        directory = self.directory(tenant, folder_id).resolve()
        target = (directory / relative).resolve()
        if not target.is_relative_to(directory) or not target.is_file():
            raise ApiError(404, f"no file {relative!r} in folder {folder_id}")
        return target


def _walk(directory: Path) -> tuple[list[dict[str, Any]], bool]:
    files: list[dict[str, Any]] = []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            if len(files) == MAX_LISTED_FILES:
                return files, True
            stat = path.stat()
            files.append(
                {
                    "path": path.relative_to(directory).as_posix(),
                    "size": stat.st_size,
                    "modified": format_timestamp(datetime.fromtimestamp(stat.st_mtime, UTC)),
                }
            )
    return files, False
