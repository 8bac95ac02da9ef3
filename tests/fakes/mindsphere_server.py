"""A local stand-in for Insights Hub Model Management v3 and Data Exchange v3.

Follows the endpoints that :mod:`adapters.mindsphere` documents (same paths, payloads and
paging), with everything in memory:

- Model Management: ``GET /models/{modelId}``, ``GET /models/{modelId}/versions/last`` and
  ``GET /models/{modelId}/versions/{versionId}``; the two version routes answer the metadata as
  JSON, or the payload when ``Accept`` asks for ``application/octet-stream``.
- Data Exchange: ``GET /directories/{id}`` (``pageNumber`` from 0, ``pageSize``; the fake never
  serves more than ``page_size_limit`` entries a page, directories first then files, by name),
  ``POST /directories`` (JSON ``{"name", "parentId"}``), ``GET /files/{id}``, ``POST /files``
  (multipart ``metadata`` + ``file``) and ``PUT /files/{id}`` (multipart ``file``). A name taken
  in the parent answers 409. ``_PUBLIC_ROOT_ID`` and ``_PRIVATE_ROOT_ID`` exist from the start.
- Every request needs ``Authorization: Bearer <token>`` (401 otherwise); errors use the
  ``{"errors": [{"code", "logref", "message"}]}`` body.

Every request is recorded in :attr:`MindSphereFake.calls` as its route key (the ``ROUTE_*``
constants). Faults: :meth:`MindSphereFake.fail_next` answers an error status (with an optional
``Retry-After``) the next N times a route is called; :meth:`MindSphereFake.delay_next` holds the
answer, before handling the request or after (then the change is applied but the answer comes
late or never, like a lost response). Delays end early when the fake closes.
"""

import asyncio
import contextlib
import itertools
import json
import math
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeAlias

from aiohttp import web
from aiohttp.typedefs import Handler

MM = "/api/modelmanagement/v3"
DX = "/api/dataexchange/v3"

ROUTE_MODEL = f"GET {MM}/models/{{modelId}}"
ROUTE_LAST_VERSION = f"GET {MM}/models/{{modelId}}/versions/last"
ROUTE_VERSION = f"GET {MM}/models/{{modelId}}/versions/{{versionId}}"
ROUTE_LIST_DIRECTORY = f"GET {DX}/directories/{{id}}"
ROUTE_CREATE_DIRECTORY = f"POST {DX}/directories"
ROUTE_DOWNLOAD_FILE = f"GET {DX}/files/{{id}}"
ROUTE_CREATE_FILE = f"POST {DX}/files"
ROUTE_REPLACE_FILE = f"PUT {DX}/files/{{id}}"

PUBLIC_ROOT = "_PUBLIC_ROOT_ID"
PRIVATE_ROOT = "_PRIVATE_ROOT_ID"
MODIFIED = "2024-01-01T00:00:00.000Z"
OCTET_STREAM = "application/octet-stream"

#: A tree as :meth:`MindSphereFake.tree` shows it: file name -> content, directory name -> tree.
Tree: TypeAlias = dict[str, "bytes | Tree"]


@dataclass
class FakeVersion:
    id: str
    number: float
    payload: bytes


@dataclass
class FakeModel:
    id: str
    name: str
    type: str
    versions: list[FakeVersion] = field(default_factory=list)


@dataclass
class FakeDirectory:
    id: str
    name: str
    parent_id: str


@dataclass
class FakeFile:
    id: str
    name: str
    parent_id: str
    content: bytes


@dataclass
class _Fault:
    remaining: int
    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    after_handling: bool = False


def _error(status: int, message: str, *, retry_after: str | None = None) -> web.Response:
    body = {"errors": [{"code": f"mdsp.fake.{status}", "logref": "fake", "message": message}]}
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return web.json_response(body, status=status, headers=headers)


class MindSphereFake:
    """The fake server; ``async with MindSphereFake() as fake:`` serves on ``fake.url``."""

    def __init__(self, *, token: str = "test-token", page_size_limit: int = 2) -> None:
        self.token = token
        self.page_size_limit = page_size_limit
        self.models: dict[str, FakeModel] = {}
        self.directories: dict[str, FakeDirectory] = {
            root: FakeDirectory(root, root, "") for root in (PUBLIC_ROOT, PRIVATE_ROOT)
        }
        self.files: dict[str, FakeFile] = {}
        #: Route keys of the requests, in arrival order.
        self.calls: list[str] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._ids = itertools.count(1)
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get(f"{MM}/models/{{modelId}}", self._get_model)
        app.router.add_get(f"{MM}/models/{{modelId}}/versions/last", self._get_last_version)
        app.router.add_get(f"{MM}/models/{{modelId}}/versions/{{versionId}}", self._get_version)
        app.router.add_get(f"{DX}/directories/{{id}}", self._list_directory)
        app.router.add_post(f"{DX}/directories", self._create_directory)
        app.router.add_get(f"{DX}/files/{{id}}", self._download_file)
        app.router.add_post(f"{DX}/files", self._create_file)
        app.router.add_put(f"{DX}/files/{{id}}", self._replace_file)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- content -----------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}-{uuid.uuid4().hex[:8]}"

    def add_model(
        self, payload: bytes, *, name: str = "model", model_type: str = "zeppelin"
    ) -> str:
        model = FakeModel(self._new_id("model"), name, model_type)
        self.models[model.id] = model
        self.add_version(model.id, payload)
        return model.id

    def add_version(self, model_id: str, payload: bytes) -> str:
        model = self.models[model_id]
        version = FakeVersion(self._new_id("version"), float(len(model.versions) + 1), payload)
        model.versions.append(version)
        return version.id

    def add_directory(self, parent_id: str, name: str) -> str:
        directory = FakeDirectory(self._new_id("dir"), name, parent_id)
        self.directories[directory.id] = directory
        return directory.id

    def add_file(self, parent_id: str, name: str, content: bytes) -> str:
        file = FakeFile(self._new_id("file"), name, parent_id, content)
        self.files[file.id] = file
        return file.id

    def tree(self, directory_id: str) -> Tree:
        """Everything under a directory, by name (duplicated names would show as one)."""
        tree: Tree = {}
        for file in self.files.values():
            if file.parent_id == directory_id:
                tree[file.name] = file.content
        for directory in self.directories.values():
            if directory.parent_id == directory_id:
                tree[directory.name] = self.tree(directory.id)
        return tree

    def file_named(self, parent_id: str, name: str) -> list[FakeFile]:
        return [f for f in self.files.values() if f.parent_id == parent_id and f.name == name]

    # -- faults and records ------------------------------------------------------------------

    def fail_next(
        self, route: str, times: int = 1, *, status: int = 503, retry_after: str | None = None
    ) -> None:
        """Answer ``status`` to the next ``times`` calls of ``route``, before handling them."""
        self._faults.setdefault(route, []).append(
            _Fault(remaining=times, status=status, retry_after=retry_after)
        )

    def delay_next(
        self, route: str, seconds: float, times: int = 1, *, after_handling: bool = False
    ) -> None:
        """Hold the next ``times`` answers of ``route`` for ``seconds``.

        With ``after_handling`` the request takes effect first, so a client that gives up
        meanwhile does not learn that it succeeded.
        """
        self._faults.setdefault(route, []).append(
            _Fault(remaining=times, delay=seconds, after_handling=after_handling)
        )

    def count(self, route: str) -> int:
        return self.calls.count(route)

    def _take_fault(self, route: str) -> _Fault | None:
        queue = self._faults.get(route, [])
        while queue and queue[0].remaining <= 0:
            queue.pop(0)
        if not queue:
            return None
        queue[0].remaining -= 1
        return queue[0]

    async def _hold(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._released.wait(), seconds)

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Handler,
    ) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = f"{request.method} {resource.canonical if resource else request.path}"
        self.calls.append(route)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "Invalid or missing bearer token")
        fault = self._take_fault(route)
        if fault is not None and not fault.after_handling:
            await self._hold(fault.delay)
            if fault.status is not None:
                return _error(fault.status, "Injected fault", retry_after=fault.retry_after)
        response = await handler(request)
        if fault is not None and fault.after_handling:
            await self._hold(fault.delay)
        return response

    # -- Model Management --------------------------------------------------------------------

    def _model(self, request: web.Request) -> FakeModel:
        model = self.models.get(request.match_info["modelId"])
        if model is None or not model.versions:
            raise web.HTTPNotFound(
                text=json.dumps({"errors": [{"message": "Model not found"}]}),
                content_type="application/json",
            )
        return model

    @staticmethod
    def _version_json(version: FakeVersion) -> dict[str, Any]:
        return {
            "id": version.id,
            "number": version.number,
            "author": "fake@example.com",
            "creationDate": MODIFIED,
            "dependencies": [],
            "io": {},
            "kpi": [],
        }

    def _version_answer(self, request: web.Request, version: FakeVersion) -> web.Response:
        if OCTET_STREAM in request.headers.get("Accept", ""):
            return web.Response(body=version.payload, content_type=OCTET_STREAM)
        return web.json_response(self._version_json(version))

    async def _get_model(self, request: web.Request) -> web.Response:
        model = self._model(request)
        return web.json_response(
            {
                "id": model.id,
                "name": model.name,
                "description": "",
                "type": model.type,
                "author": "fake@example.com",
                "lastVersion": self._version_json(model.versions[-1]),
            }
        )

    async def _get_last_version(self, request: web.Request) -> web.Response:
        return self._version_answer(request, self._model(request).versions[-1])

    async def _get_version(self, request: web.Request) -> web.Response:
        wanted = request.match_info["versionId"]
        for version in self._model(request).versions:
            if version.id == wanted:
                return self._version_answer(request, version)
        return _error(404, "Version not found")

    # -- Data Exchange -----------------------------------------------------------------------

    @staticmethod
    def _directory_json(directory: FakeDirectory) -> dict[str, Any]:
        return {
            "id": directory.id,
            "name": directory.name,
            "parentId": directory.parent_id,
            "modifiedDate": MODIFIED,
            "modifiedBy": "fake@example.com",
        }

    @staticmethod
    def _file_json(file: FakeFile) -> dict[str, Any]:
        return {
            "id": file.id,
            "name": file.name,
            "parentId": file.parent_id,
            "type": OCTET_STREAM,
            "sizeInBytes": len(file.content),
            "modifiedDate": MODIFIED,
            "modifiedBy": "fake@example.com",
        }

    def _name_taken(self, parent_id: str, name: str) -> bool:
        entries: list[FakeDirectory | FakeFile] = [*self.directories.values(), *self.files.values()]
        return any(entry.parent_id == parent_id and entry.name == name for entry in entries)

    async def _list_directory(self, request: web.Request) -> web.Response:
        directory_id = request.match_info["id"]
        if directory_id not in self.directories:
            return _error(404, "Directory not found")
        try:
            number = int(request.query.get("pageNumber", "0"))
            size = min(int(request.query.get("pageSize", "20")), self.page_size_limit)
        except ValueError:
            return _error(400, "pageNumber and pageSize must be integers")
        if number < 0 or size < 1:
            return _error(400, "pageNumber must be >= 0 and pageSize >= 1")
        directories = sorted(
            (d for d in self.directories.values() if d.parent_id == directory_id),
            key=lambda d: d.name,
        )
        files = sorted(
            (f for f in self.files.values() if f.parent_id == directory_id), key=lambda f: f.name
        )
        entries: list[FakeDirectory | FakeFile] = [*directories, *files]
        page = entries[number * size : (number + 1) * size]
        return web.json_response(
            {
                "files": [self._file_json(e) for e in page if isinstance(e, FakeFile)],
                "directories": [
                    self._directory_json(e) for e in page if isinstance(e, FakeDirectory)
                ],
                "page": {
                    "number": number,
                    "size": size,
                    "totalPages": math.ceil(len(entries) / size),
                    "totalElements": len(entries),
                },
            }
        )

    async def _create_directory(self, request: web.Request) -> web.Response:
        try:
            metadata = await request.json()
            name, parent_id = metadata["name"], metadata["parentId"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "Expected a JSON body with name and parentId")
        if parent_id not in self.directories:
            return _error(404, "Parent directory not found")
        if self._name_taken(parent_id, name):
            return _error(409, "A resource with this name already exists")
        directory = self.directories[self.add_directory(parent_id, name)]
        return web.json_response(self._directory_json(directory), status=201)

    async def _download_file(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["id"])
        if file is None:
            return _error(404, "File not found")
        return web.Response(body=file.content, content_type=OCTET_STREAM)

    @staticmethod
    async def _form(request: web.Request) -> tuple[dict[str, Any] | None, bytes | None]:
        form = await request.post()
        metadata: dict[str, Any] | None = None
        raw = form.get("metadata")
        if isinstance(raw, str | bytes | bytearray):
            loaded = json.loads(raw)
            metadata = loaded if isinstance(loaded, dict) else None
        content: bytes | None = None
        for value in form.values():
            if isinstance(value, web.FileField):
                with value.file:  # the spooled temporary file of every part
                    if value.name == "file":
                        content = value.file.read()
        return metadata, content

    async def _create_file(self, request: web.Request) -> web.Response:
        metadata, content = await self._form(request)
        if metadata is None or content is None or "name" not in metadata:
            return _error(400, "Expected form fields metadata (with name, parentId) and file")
        name, parent_id = metadata["name"], metadata.get("parentId")
        if parent_id not in self.directories:
            return _error(404, "Parent directory not found")
        if self._name_taken(parent_id, name):
            return _error(409, "A resource with this name already exists")
        file = self.files[self.add_file(parent_id, name, content)]
        return web.json_response(self._file_json(file), status=201)

    async def _replace_file(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["id"])
        if file is None:
            return _error(404, "File not found")
        _, content = await self._form(request)
        if content is None:
            return _error(400, "Expected form field file")
        file.content = content
        return web.json_response(self._file_json(file))
