"""Models and data folders on Insights Hub (formerly MindSphere): HTTP adapters for the ports.

:class:`MindSphereModelStore` implements ``ModelStore`` on Model Management v3 and
:class:`MindSphereFolderStore` implements ``FolderStore`` on Data Exchange v3. Every call carries
``Authorization: Bearer <token>`` from ``token_provider(tenant)`` (asked again for each attempt,
so a refreshed token is picked up); the token alone selects the tenant, URLs do not name it.

Documented endpoints used
-------------------------
Model Management (``/api/modelmanagement/v3``; spec
https://documentation.mindsphere.io/MindSphere/api/specs/modelmanagement-v3.yaml, samples
https://developer.siemens.com/insights-hub/docs/apis/analytics-modelmanagement/api-modelmanagement-samples.html):

- ``GET /models/{modelId}/versions/last`` with ``Accept: application/json``: the last version's
  metadata (``id``, ``number``, ...); 404 when the model does not exist.
- ``GET /models/{modelId}/versions/{versionId}`` with ``Accept: application/octet-stream``: the
  version's payload (the same path answers the metadata for ``application/json``). This is how
  Siemens' own SDK downloads a payload (``DownloadModelVersion`` in
  https://github.com/mindsphere/mindconnect-nodejs, ``src/api/sdk/model/model-management.ts``,
  which names the media type in ``Content-Type``; this adapter uses ``Accept``). No
  ``.../versions/{versionId}/file`` path was found in the documentation, so none is used.

Data Exchange (``/api/dataexchange/v3``; spec
https://documentation.mindsphere.io/MindSphere/api/specs/dataexchange-v3-0-1.yaml, samples
https://developer.siemens.com/insights-hub/docs/apis/analytics-dataexchange/api-dataexchange-samples.html):

- ``GET /directories/{id}?pageNumber=&pageSize=``: ``{"files": [...], "directories": [...],
  "page": {"number", "size", "totalPages", "totalElements"}}``; entries have ``id``, ``name``,
  ``parentId``. ``_PUBLIC_ROOT_ID`` / ``_PRIVATE_ROOT_ID`` name the two roots.
- ``GET /files/{id}``: the file's content.
- ``POST /files``: multipart form, ``metadata`` (JSON ``{"name", "parentId"}``) and ``file``
  (the content), as in the samples; answers the created file.
- ``PUT /files/{id}``: multipart form with ``file``: replaces the content of an existing file.
- ``POST /directories`` with ``{"name", "parentId"}``: creates a sub-directory.
- Names may not contain ``&$@=;:+,?^{}%`[]"<>#|~!*'`` (documented); such local names are refused
  before anything is uploaded.

Choices where the documentation is silent
-----------------------------------------
- Paging: pages are numbered from 0 (as Siemens' SDK does); the listing is read page after page
  while ``page.number + 1 < page.totalPages`` and the page was not empty, whatever page size the
  service really applied. ``pageSize`` asked: 100.
- ``POST /directories`` sends its metadata as a JSON body (Siemens' SDK does; the sample only
  shows ``metadata: {...}``). The created resource's id is read from ``id`` (spec) or
  ``resourceId`` (samples).
- Upload merges into the target like ``shutil.copytree(..., dirs_exist_ok=True)``: a file whose
  name already exists in the remote directory is overwritten in place with ``PUT`` (same id), a
  sub-directory that exists is reused, other remote entries are left alone. A name used by a
  directory on one side and a file on the other is an error.
- Download writes every file of the tree under ``destination`` (overwriting local files); a
  remote name that is not a plain file name (``..``, ``/``...) is refused. A file whose download
  fails is removed, not left half written. Files are copied one at a time.
- Retries: idempotent calls (GET, PUT) are retried on 500/502/503/504, 429, timeouts and
  connection errors, with exponential backoff (``RetryPolicy``); a ``Retry-After`` (seconds or
  HTTP date) is waited instead of the backoff, up to ``RetryPolicy.max_retry_after``. A POST is
  sent again only when it certainly was not processed (429, connection refused); after an
  ambiguous failure (5xx, timeout, connection lost, or 409 "name taken") the parent directory
  is listed first: if the file or directory is there it is used (a file gets its content
  ``PUT`` again), otherwise the POST is repeated, within the same attempt budget.
- Timeouts: ``timeout`` bounds each metadata call (connect, send, answer); for file content it
  bounds inactivity (connecting, or waiting for data), so large files are not cut off.
- Errors: 404 for the model, or for the folder given, becomes :class:`~adapters.ports.NotFound`
  (``model X not found``, ``input folder X not found``...); every other failure is a
  :class:`MindSphereError` (an ``OSError``; :class:`MindSphereTimeout` is also a
  ``TimeoutError``) whose message names the service, the operation and the cause, e.g.
  ``Data Exchange: upload of result.txt failed [HTTP 503 after 4 attempts]``.
"""

import asyncio
import email.utils
import functools
import json
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote

import aiohttp

from adapters.ports import NotFound
from schemas.notes import InvalidNote, Note, parse_note

TokenProvider = Callable[[str], Awaitable[str]]

MODEL_MANAGEMENT = "Model Management"
DATA_EXCHANGE = "Data Exchange"

_MODELS = "/api/modelmanagement/v3/models"
_DIRECTORIES = "/api/dataexchange/v3/directories"
_FILES = "/api/dataexchange/v3/files"

DEFAULT_TIMEOUT_SECONDS = 30.0
#: Entries asked per listing page (the service may apply a smaller size).
LISTING_PAGE_SIZE = 100
#: Largest model payload read as a note.
MAX_NOTE_BYTES = 16 * 1024 * 1024

_RETRIED_STATUSES = frozenset({500, 502, 503, 504})
_TOO_MANY_REQUESTS = 429
_CONFLICT = 409
# Documented as not allowed in Data Exchange file and directory names.
_FORBIDDEN_NAME_CHARACTERS = re.compile(r"[&$@=;:+,?\\^{}%`\[\]\"<>#|~!*'\x00-\x1f]")
_CHUNK_BYTES = 1024 * 1024

T = TypeVar("T")


class MindSphereError(OSError):
    """A MindSphere call failed; the message names the service, the operation and the cause.

    ``status`` is the last HTTP status (None for timeouts and connection errors), ``cause`` the
    short reason (``HTTP 503``, ``timed out (30 s)``...), ``attempts`` how many tries were made.
    """

    def __init__(
        self, message: str, *, status: int | None = None, cause: str = "", attempts: int = 1
    ) -> None:
        super().__init__(message)
        self.status = status
        self.cause = cause
        self.attempts = attempts

    def __str__(self) -> str:
        return str(self.args[0])


class MindSphereTimeout(MindSphereError, TimeoutError):
    """The service did not answer within the timeout, on every attempt."""


class _MaybeApplied(MindSphereError):
    """A POST failed in a way that does not tell whether the service applied it."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently one call is tried.

    ``attempts`` counts every try of a call (first included); the pause before try n+1 is
    ``backoff * 2**(n-1)`` (at most ``max_backoff``, with jitter), or the ``Retry-After`` the
    service sent, bounded by ``max_retry_after``.
    """

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 30.0

    def pause(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        delay = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)


_TIMED_OUT = "timed out"


def _error_type(cause: str) -> type[MindSphereError]:
    return MindSphereTimeout if cause.startswith(_TIMED_OUT) else MindSphereError


def _failure(service: str, what: str, cause: str, attempts: int) -> str:
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    return f"{service}: {what} failed [{cause}{tries}]"


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or its first ``limit`` + 1 bytes when it is longer than ``limit``."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            break
    return bytes(body[: limit + 1])


async def _error_detail(response: aiohttp.ClientResponse) -> str:
    """The service's own message, from its ``{"errors": [{"message"}]}`` body, if any."""
    try:
        body = await _read_at_most(response, 64 * 1024)
        data = json.loads(body)
    except (ValueError, aiohttp.ClientError, TimeoutError):
        return ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        message = errors[0].get("message")
        if isinstance(message, str):
            return message.strip()[:200]
    return ""


class _MalformedAnswer(ValueError):
    """A 2xx answer whose body is not the JSON the documentation describes."""


async def _json(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except ValueError as malformed:
        raise _MalformedAnswer(f"malformed answer: {malformed}") from None


async def _drain(response: aiohttp.ClientResponse) -> None:
    await response.read()


class _Service:
    """One MindSphere service: its session, its credentials and the retry loop."""

    def __init__(
        self,
        name: str,
        base_url: str,
        token_provider: TokenProvider,
        timeout: float,
        retry: RetryPolicy,
    ) -> None:
        if retry.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        self.name = name
        self.retry = retry
        self._base_url = base_url.rstrip("/")
        self._tokens = token_provider
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def pause(self, attempt: int, retry_after: float | None = None) -> None:
        await asyncio.sleep(self.retry.pause(attempt, retry_after))

    async def _token(self, tenant: str, what: str) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._tokens(tenant)
        except Exception as failure:
            cause = f"no access token for tenant {tenant}: {failure or type(failure).__name__}"
            raise MindSphereError(_failure(self.name, what, cause, 1), cause=cause) from failure

    async def call(
        self,
        tenant: str,
        method: str,
        path: str,
        what: str,
        handle: Callable[[aiohttp.ClientResponse], Awaitable[T]],
        *,
        params: Mapping[str, str] | None = None,
        accept: str = "application/json",
        json_body: Any = None,
        form: Callable[[], aiohttp.FormData] | None = None,
        not_found: str | None = None,
        transfer: bool = False,
    ) -> T:
        """Send one request, trying again as the policy allows; ``handle`` reads a 2xx answer.

        GET and PUT are retried on 5xx, 429, timeouts and connection errors. Other methods are
        retried only when the request certainly was not processed (429, connection refused);
        an ambiguous failure raises :class:`_MaybeApplied` for the caller to check.
        """
        idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        url = self._base_url + path
        attempt = 0
        while True:
            attempt += 1
            token = await self._token(tenant, what)
            headers = {"Authorization": f"Bearer {token}", "Accept": accept}
            timeout = (
                aiohttp.ClientTimeout(
                    total=None, sock_connect=self._timeout, sock_read=self._timeout
                )
                if transfer
                else aiohttp.ClientTimeout(total=self._timeout)
            )
            status: int | None = None
            retry_after: float | None = None
            safe_to_resend = idempotent
            try:
                async with self._client().request(
                    method,
                    url,
                    params=params,
                    headers=headers,
                    json=json_body,
                    data=form() if form is not None else None,
                    timeout=timeout,
                ) as response:
                    if 200 <= response.status < 300:
                        return await handle(response)
                    status = response.status
                    if status == 404 and not_found is not None:
                        raise NotFound(not_found)
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                    detail = await _error_detail(response)
                cause = f"HTTP {status}"
                if status == _TOO_MANY_REQUESTS:
                    safe_to_resend = True  # refused before being processed
                elif status not in _RETRIED_STATUSES:
                    message = _failure(
                        self.name, what, f"{cause}: {detail}" if detail else cause, attempt
                    )
                    raise MindSphereError(message, status=status, cause=cause, attempts=attempt)
            except _MalformedAnswer as malformed:
                raise MindSphereError(
                    _failure(self.name, what, str(malformed), attempt), cause=str(malformed)
                ) from None
            except TimeoutError:
                cause = f"{_TIMED_OUT} ({self._timeout:g} s)"
            except aiohttp.ClientConnectorError as failure:
                cause = f"cannot connect: {failure.os_error.strerror or failure}"
                safe_to_resend = True  # the request never left
            except aiohttp.ClientError as failure:
                cause = f"connection error: {failure or type(failure).__name__}"

            if not safe_to_resend:
                raise _MaybeApplied(
                    _failure(self.name, what, cause, attempt),
                    status=status,
                    cause=cause,
                    attempts=attempt,
                )
            if attempt >= self.retry.attempts:
                raise _error_type(cause)(
                    _failure(self.name, what, cause, attempt),
                    status=status,
                    cause=cause,
                    attempts=attempt,
                )
            await self.pause(attempt, retry_after)


class MindSphereModelStore:
    """``ModelStore`` on Model Management v3: the last version's payload, parsed as a note."""

    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry: RetryPolicy | None = None,
        max_note_bytes: int = MAX_NOTE_BYTES,
    ) -> None:
        self._service = _Service(
            MODEL_MANAGEMENT, base_url, token_provider, timeout, retry or RetryPolicy()
        )
        self._max_note_bytes = max_note_bytes

    async def close(self) -> None:
        await self._service.close()

    async def load_note(self, tenant: str, model_id: str) -> Note:
        missing = f"model {model_id} not found"
        model_path = f"{_MODELS}/{quote(model_id, safe='')}"
        version = await self._service.call(
            tenant,
            "GET",
            f"{model_path}/versions/last",
            f"lookup of model {model_id}",
            _json,
            not_found=missing,
        )
        version_id = version.get("id") if isinstance(version, dict) else None
        if not isinstance(version_id, str) or not version_id:
            raise MindSphereError(
                f"{MODEL_MANAGEMENT}: last version of model {model_id} has no id",
                cause="no version id",
            )

        async def read_payload(response: aiohttp.ClientResponse) -> bytes:
            raw = await _read_at_most(response, self._max_note_bytes)
            if len(raw) > self._max_note_bytes:
                raise InvalidNote(
                    f"model {model_id} is larger than {self._max_note_bytes} bytes, not a note"
                )
            return raw

        raw = await self._service.call(
            tenant,
            "GET",
            f"{model_path}/versions/{quote(version_id, safe='')}",
            f"download of model {model_id} version {version_id}",
            read_payload,
            accept="application/octet-stream",
            not_found=missing,
            transfer=True,
        )
        try:
            return parse_note(raw)
        except InvalidNote as invalid:
            raise InvalidNote(f"model {model_id} is not a Zeppelin note: {invalid}") from None


@dataclass(slots=True)
class _Listing:
    """One remote directory: name -> id of its files and of its sub-directories."""

    files: dict[str, str] = field(default_factory=dict)
    directories: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _LocalTree:
    files: list[tuple[str, Path]] = field(default_factory=list)
    directories: list[tuple[str, "_LocalTree"]] = field(default_factory=list)


def _resource_id(data: Any, what: str) -> str:
    if isinstance(data, dict):
        for key in ("id", "resourceId"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
    raise MindSphereError(f"{DATA_EXCHANGE}: {what} answered no id", cause="no id")


def _entries(data: Any, key: str, where: str) -> dict[str, str]:
    items = (data.get(key) or []) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise MindSphereError(
            f"{DATA_EXCHANGE}: listing of {where} is malformed ('{key}' is not a list)",
            cause="malformed listing",
        )
    entries = {}
    for item in items:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise MindSphereError(
                f"{DATA_EXCHANGE}: listing of {where} has an entry without a name",
                cause="malformed listing",
            )
        entries[name] = _resource_id(item, f"listing of {where}")
    return entries


def _plain_name(name: str, where: str) -> str:
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise MindSphereError(
            f"{DATA_EXCHANGE}: refusing to download {name!r} from {where}: not a plain file name",
            cause="unsafe name",
        )
    return name


def _relative(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _scan(directory: Path, relative: str = "") -> _LocalTree:
    """The files and sub-directories under ``directory`` (symlinks followed), names checked."""
    tree = _LocalTree()
    with os.scandir(directory) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            where = _relative(relative, entry.name)
            if entry.is_dir():
                _check_name(entry.name, where)
                tree.directories.append((entry.name, _scan(Path(entry.path), where)))
            elif entry.is_file():
                _check_name(entry.name, where)
                tree.files.append((entry.name, Path(entry.path)))
    return tree


def _check_name(name: str, where: str) -> None:
    bad = sorted(set(_FORBIDDEN_NAME_CHARACTERS.findall(name)))
    if bad:
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in bad)
        raise MindSphereError(
            f"{DATA_EXCHANGE}: cannot upload {where}: the name contains {shown!r}, "
            "which Data Exchange does not allow",
            cause="forbidden name",
        )


async def _save_to(target: Path, response: aiohttp.ClientResponse) -> None:
    """Stream the body into ``target``, truncating what an earlier attempt left."""
    sink = await asyncio.to_thread(target.open, "wb")
    try:
        buffer = bytearray()
        async for chunk in response.content.iter_chunked(64 * 1024):
            buffer += chunk
            if len(buffer) >= _CHUNK_BYTES:
                await asyncio.to_thread(sink.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await asyncio.to_thread(sink.write, bytes(buffer))
    finally:
        await asyncio.to_thread(sink.close)


class MindSphereFolderStore:
    """``FolderStore`` on Data Exchange v3: folders are directory ids, copied recursively."""

    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry: RetryPolicy | None = None,
        page_size: int = LISTING_PAGE_SIZE,
    ) -> None:
        self._service = _Service(
            DATA_EXCHANGE, base_url, token_provider, timeout, retry or RetryPolicy()
        )
        self._page_size = page_size

    async def close(self) -> None:
        await self._service.close()

    async def exists(self, tenant: str, folder_id: str) -> bool:
        try:
            await self._service.call(
                tenant,
                "GET",
                f"{_DIRECTORIES}/{quote(folder_id, safe='')}",
                f"lookup of directory {folder_id}",
                _drain,
                params={"pageNumber": "0", "pageSize": "1"},
                not_found="",
            )
        except NotFound:
            return False
        return True

    async def download(self, tenant: str, folder_id: str, destination: Path) -> None:
        listing = await self._list(
            tenant, folder_id, f"directory {folder_id}", f"input folder {folder_id} not found"
        )
        await self._download_tree(tenant, listing, destination, "", {folder_id})

    async def upload(self, source: Path, tenant: str, folder_id: str) -> None:
        tree = await asyncio.to_thread(_scan, source)
        listing = await self._list(
            tenant, folder_id, f"directory {folder_id}", f"output folder {folder_id} not found"
        )
        await self._upload_tree(tenant, tree, folder_id, listing, "")

    async def _list(
        self, tenant: str, directory_id: str, where: str, not_found: str | None = None
    ) -> _Listing:
        """Every entry of a directory, following the pages."""
        listing = _Listing()
        number = 0
        while True:
            data = await self._service.call(
                tenant,
                "GET",
                f"{_DIRECTORIES}/{quote(directory_id, safe='')}",
                f"listing of {where}",
                _json,
                params={"pageNumber": str(number), "pageSize": str(self._page_size)},
                not_found=not_found,
            )
            files = _entries(data, "files", where)
            directories = _entries(data, "directories", where)
            listing.files.update(files)
            listing.directories.update(directories)
            page = data.get("page") if isinstance(data, dict) else None
            total = page.get("totalPages") if isinstance(page, dict) else None
            if not isinstance(total, int) or number + 1 >= total or not (files or directories):
                return listing
            number += 1

    async def _download_tree(
        self, tenant: str, listing: _Listing, destination: Path, relative: str, seen: set[str]
    ) -> None:
        where = f"directory {relative or '.'}"
        await asyncio.to_thread(destination.mkdir, parents=True, exist_ok=True)
        for name, file_id in sorted(listing.files.items()):
            target = destination / _plain_name(name, where)
            path = _relative(relative, name)
            try:
                await self._service.call(
                    tenant,
                    "GET",
                    f"{_FILES}/{quote(file_id, safe='')}",
                    f"download of {path}",
                    functools.partial(_save_to, target),
                    accept="application/octet-stream",
                    not_found=f"input file {path} disappeared during the download",
                    transfer=True,
                )
            except BaseException:
                await asyncio.to_thread(target.unlink, missing_ok=True)
                raise
        for name, directory_id in sorted(listing.directories.items()):
            if directory_id in seen:
                continue  # a link back up the tree would never end
            path = _relative(relative, name)
            child = await self._list(tenant, directory_id, f"directory {path}")
            await self._download_tree(
                tenant,
                child,
                destination / _plain_name(name, where),
                path,
                seen | {directory_id},
            )

    async def _upload_tree(
        self, tenant: str, tree: _LocalTree, directory_id: str, listing: _Listing, relative: str
    ) -> None:
        for name, local in tree.files:
            path = _relative(relative, name)
            if name in listing.directories:
                raise MindSphereError(
                    f"{DATA_EXCHANGE}: cannot upload {path}: a directory of that name exists",
                    cause="name taken",
                )
            existing = listing.files.get(name)
            if existing is not None:
                await self._replace_file(tenant, existing, local, path)
            else:
                listing.files[name] = await self._create_file(
                    tenant, directory_id, name, local, path, relative
                )
        for name, subtree in tree.directories:
            path = _relative(relative, name)
            if name in listing.files:
                raise MindSphereError(
                    f"{DATA_EXCHANGE}: cannot upload {path}/: a file of that name exists",
                    cause="name taken",
                )
            child_id = listing.directories.get(name)
            if child_id is None:
                child_id = await self._create_directory(tenant, directory_id, name, path, relative)
                listing.directories[name] = child_id
                child = _Listing()
            else:
                child = await self._list(tenant, child_id, f"directory {path}")
            await self._upload_tree(tenant, subtree, child_id, child, path)

    async def _replace_file(self, tenant: str, file_id: str, local: Path, path: str) -> None:
        opened: list[IO[bytes]] = []

        def form() -> aiohttp.FormData:
            content = local.open("rb")
            opened.append(content)
            data = aiohttp.FormData()
            data.add_field(
                "file", content, filename=local.name, content_type="application/octet-stream"
            )
            return data

        try:
            await self._service.call(
                tenant,
                "PUT",
                f"{_FILES}/{quote(file_id, safe='')}",
                f"upload of {path}",
                _drain,
                form=form,
                transfer=True,
            )
        finally:
            for content in opened:
                content.close()

    async def _create_file(
        self, tenant: str, parent_id: str, name: str, local: Path, path: str, parent_path: str
    ) -> str:
        opened: list[IO[bytes]] = []

        def form() -> aiohttp.FormData:
            content = local.open("rb")
            opened.append(content)
            data = aiohttp.FormData()
            metadata = json.dumps({"name": name, "parentId": parent_id})
            data.add_field("metadata", metadata, content_type="application/json")
            data.add_field("file", content, filename=name, content_type="application/octet-stream")
            return data

        async def created(response: aiohttp.ClientResponse) -> str:
            return _resource_id(await _json(response), f"upload of {path}")

        try:
            return await self._create(
                tenant,
                parent_id,
                parent_path,
                f"upload of {path}",
                lambda: self._service.call(
                    tenant, "POST", _FILES, f"upload of {path}", created, form=form, transfer=True
                ),
                lambda listing: listing.files.get(name),
                lambda file_id: self._replace_file(tenant, file_id, local, path),
            )
        finally:
            for content in opened:
                content.close()

    async def _create_directory(
        self, tenant: str, parent_id: str, name: str, path: str, parent_path: str
    ) -> str:
        what = f"creation of directory {path}"

        async def created(response: aiohttp.ClientResponse) -> str:
            return _resource_id(await _json(response), what)

        async def nothing_to_complete(directory_id: str) -> None:
            return None

        return await self._create(
            tenant,
            parent_id,
            parent_path,
            what,
            lambda: self._service.call(
                tenant,
                "POST",
                _DIRECTORIES,
                what,
                created,
                json_body={"name": name, "parentId": parent_id},
            ),
            lambda listing: listing.directories.get(name),
            nothing_to_complete,
        )

    async def _create(
        self,
        tenant: str,
        parent_id: str,
        parent_path: str,
        what: str,
        post: Callable[[], Awaitable[str]],
        find: Callable[[_Listing], str | None],
        complete: Callable[[str], Awaitable[None]],
    ) -> str:
        """POST, and after an ambiguous failure look in the parent before posting again."""
        attempts = self._service.retry.attempts
        last: MindSphereError | None = None
        for attempt in range(1, attempts + 1):
            try:
                return await post()
            except _MaybeApplied as failure:
                last = failure
            except MindSphereError as failure:
                if failure.status != _CONFLICT:
                    raise
                last = failure
            where = f"directory {parent_path or parent_id}"
            existing = find(await self._list(tenant, parent_id, where))
            if existing is not None:
                await complete(existing)
                return existing
            if last.status == _CONFLICT:
                raise last  # taken by something else than what we wanted to create
            if attempt < attempts:
                await self._service.pause(attempt)
        assert last is not None  # attempts >= 1
        raise _error_type(last.cause)(
            _failure(DATA_EXCHANGE, what, last.cause, attempts),
            status=last.status,
            cause=last.cause,
            attempts=attempts,
        )


__all__ = [
    "DATA_EXCHANGE",
    "MODEL_MANAGEMENT",
    "MindSphereError",
    "MindSphereFolderStore",
    "MindSphereModelStore",
    "MindSphereTimeout",
    "RetryPolicy",
    "TokenProvider",
]
