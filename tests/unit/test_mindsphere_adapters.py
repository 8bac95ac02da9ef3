"""The MindSphere adapters against the local fake of Model Management and Data Exchange."""

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from adapters.mindsphere import (
    MindSphereError,
    MindSphereFolderStore,
    MindSphereModelStore,
    MindSphereTimeout,
    RetryPolicy,
)
from adapters.ports import NotFound
from schemas.notes import InvalidNote, parse_note
from tests.fakes.mindsphere_server import (
    PUBLIC_ROOT,
    ROUTE_CREATE_DIRECTORY,
    ROUTE_CREATE_FILE,
    ROUTE_DOWNLOAD_FILE,
    ROUTE_LAST_VERSION,
    ROUTE_LIST_DIRECTORY,
    ROUTE_REPLACE_FILE,
    ROUTE_VERSION,
    MindSphereFake,
    Tree,
)

NOTES = Path(__file__).resolve().parents[1] / "fixtures" / "notes"
TOKEN = "test-token"
TENANT = "acme"
DEADLINE_SECONDS = 10.0
FAST = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.05, max_retry_after=2.0)

T = TypeVar("T")


async def within(call: Awaitable[T], seconds: float = DEADLINE_SECONDS) -> T:
    """Await ``call``, failing the test if it takes longer than ``seconds``."""
    return await asyncio.wait_for(call, seconds)


async def _token(tenant: str) -> str:
    assert tenant == TENANT
    return TOKEN


@pytest.fixture
async def fake() -> AsyncIterator[MindSphereFake]:
    async with MindSphereFake(token=TOKEN, page_size_limit=2) as server:
        yield server


@pytest.fixture
async def models(fake: MindSphereFake) -> AsyncIterator[MindSphereModelStore]:
    store = MindSphereModelStore(fake.url, _token, timeout=2.0, retry=FAST)
    yield store
    await store.close()


@pytest.fixture
async def folders(fake: MindSphereFake) -> AsyncIterator[MindSphereFolderStore]:
    store = MindSphereFolderStore(fake.url, _token, timeout=2.0, retry=FAST)
    yield store
    await store.close()


def _local_tree(root: Path) -> Tree:
    tree: Tree = {}
    for path in sorted(root.iterdir()):
        tree[path.name] = _local_tree(path) if path.is_dir() else path.read_bytes()
    return tree


def _write_tree(root: Path, tree: Tree) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in tree.items():
        if isinstance(content, bytes):
            (root / name).write_bytes(content)
        else:
            _write_tree(root / name, content)


def _seed_tree(fake: MindSphereFake, parent_id: str, tree: Tree) -> None:
    for name, content in tree.items():
        if isinstance(content, bytes):
            fake.add_file(parent_id, name, content)
        else:
            _seed_tree(fake, fake.add_directory(parent_id, name), content)


NESTED: Tree = {
    "a.csv": b"x\n1\n",
    "b.csv": b"x\n2\n",
    "c.csv": b"x\n3\n",
    "d.bin": bytes(range(256)) * 300,
    "empty.txt": b"",
    "sub": {
        "e.txt": b"e",
        "f.txt": b"f",
        "g.txt": b"g",
        "deeper": {"h.txt": b"h"},
        "nothing": {},
    },
}


# -- Model Management -------------------------------------------------------------------------


async def test_load_note_reads_the_last_version(
    fake: MindSphereFake, models: MindSphereModelStore
) -> None:
    """The note is parsed from the payload of the model's last version."""
    model_id = fake.add_model((NOTES / "failing.zpln").read_bytes())
    fake.add_version(model_id, (NOTES / "success.zpln").read_bytes())

    note = await within(models.load_note(TENANT, model_id))

    assert note == parse_note((NOTES / "success.zpln").read_bytes())
    assert fake.count(ROUTE_LAST_VERSION) == 1
    assert fake.count(ROUTE_VERSION) == 1


async def test_missing_model_is_not_found(models: MindSphereModelStore) -> None:
    """A model the service does not know raises NotFound naming it."""
    with pytest.raises(NotFound, match=r"^model no-such-model not found$"):
        await within(models.load_note(TENANT, "no-such-model"))


async def test_payload_that_is_not_a_note_is_invalid(
    fake: MindSphereFake, models: MindSphereModelStore
) -> None:
    """A payload that is not a Zeppelin note raises InvalidNote naming the model."""
    model_id = fake.add_model(b"\x89PNG not a note")

    with pytest.raises(InvalidNote, match=rf"model {model_id} is not a Zeppelin note"):
        await within(models.load_note(TENANT, model_id))


async def test_large_note_is_read_whole_and_bounded(fake: MindSphereFake) -> None:
    """A payload of many chunks is read entirely; one over the size bound is refused."""
    text = "%python\n" + "x = 1\n" * 400_000
    payload = json.dumps({"paragraphs": [{"id": "p1", "text": text}]}).encode()
    model_id = fake.add_model(payload)
    store = MindSphereModelStore(fake.url, _token, timeout=5.0, retry=FAST)
    small = MindSphereModelStore(fake.url, _token, retry=FAST, max_note_bytes=len(payload) - 1)
    try:
        note = await within(store.load_note(TENANT, model_id))
        with pytest.raises(InvalidNote, match=r"larger than \d+ bytes"):
            await within(small.load_note(TENANT, model_id))
    finally:
        await store.close()
        await small.close()
    assert note.paragraphs[0].text == text


async def test_get_is_retried_after_two_503(
    fake: MindSphereFake, models: MindSphereModelStore
) -> None:
    """Two 503 answers to a GET are retried and the third attempt succeeds."""
    model_id = fake.add_model((NOTES / "success.zpln").read_bytes())
    fake.fail_next(ROUTE_LAST_VERSION, 2, status=503)

    note = await within(models.load_note(TENANT, model_id))

    assert note.paragraphs
    assert fake.count(ROUTE_LAST_VERSION) == 3


async def test_persistent_503_names_service_status_and_attempts(
    fake: MindSphereFake, models: MindSphereModelStore
) -> None:
    """After the last attempt the OSError names the service, the call, the status and tries."""
    model_id = fake.add_model((NOTES / "success.zpln").read_bytes())
    fake.fail_next(ROUTE_LAST_VERSION, 10, status=503)

    with pytest.raises(MindSphereError) as raised:
        await within(models.load_note(TENANT, model_id))

    assert isinstance(raised.value, OSError)
    assert str(raised.value) == (
        f"Model Management: lookup of model {model_id} failed [HTTP 503 after 4 attempts]"
    )
    assert fake.count(ROUTE_LAST_VERSION) == 4


async def test_wrong_token_fails_without_retrying(fake: MindSphereFake) -> None:
    """A 401 is not retried and its message carries the service's reason."""
    model_id = fake.add_model((NOTES / "success.zpln").read_bytes())

    async def wrong_token(tenant: str) -> str:
        return "not-the-token"

    store = MindSphereModelStore(fake.url, wrong_token, timeout=2.0, retry=FAST)
    try:
        with pytest.raises(MindSphereError, match=r"\[HTTP 401: Invalid or missing bearer token\]"):
            await within(store.load_note(TENANT, model_id))
    finally:
        await store.close()
    assert fake.count(ROUTE_LAST_VERSION) == 1


# -- Data Exchange: exists and download -------------------------------------------------------


async def test_folder_exists_or_not(fake: MindSphereFake, folders: MindSphereFolderStore) -> None:
    """exists is True for a directory id and False for an unknown one."""
    folder_id = fake.add_directory(PUBLIC_ROOT, "inputs")

    assert await within(folders.exists(TENANT, folder_id)) is True
    assert await within(folders.exists(TENANT, PUBLIC_ROOT)) is True
    assert await within(folders.exists(TENANT, "no-such-directory")) is False


async def test_download_copies_a_nested_tree_across_pages(
    fake: MindSphereFake, folders: MindSphereFolderStore, tmp_path: Path
) -> None:
    """Every file of a nested directory arrives, listings being read page after page."""
    folder_id = fake.add_directory(PUBLIC_ROOT, "inputs")
    _seed_tree(fake, folder_id, NESTED)
    destination = tmp_path / "workspace" / "input"

    await within(folders.download(TENANT, folder_id, destination))

    assert _local_tree(destination) == NESTED
    # root: 6 entries, sub: 5, deeper: 1, nothing: 0 -> 3 + 3 + 1 + 1 pages of 2 entries.
    assert fake.count(ROUTE_LIST_DIRECTORY) == 8
    assert fake.count(ROUTE_DOWNLOAD_FILE) == 9


async def test_download_of_missing_folder_is_not_found(
    folders: MindSphereFolderStore, tmp_path: Path
) -> None:
    """Downloading a directory that does not exist raises NotFound."""
    with pytest.raises(NotFound, match=r"^input folder nope not found$"):
        await within(folders.download(TENANT, "nope", tmp_path / "input"))


async def test_download_timeout_gives_a_clear_error(fake: MindSphereFake, tmp_path: Path) -> None:
    """A file that never arrives fails with a TimeoutError naming the file, limit and tries."""
    folder_id = fake.add_directory(PUBLIC_ROOT, "inputs")
    fake.add_file(folder_id, "a.txt", b"late")
    fake.delay_next(ROUTE_DOWNLOAD_FILE, 30.0, times=5)
    store = MindSphereFolderStore(fake.url, _token, timeout=0.2, retry=FAST)
    destination = tmp_path / "input"

    try:
        with pytest.raises(MindSphereTimeout) as raised:
            await within(store.download(TENANT, folder_id, destination), 5.0)
    finally:
        await store.close()

    assert isinstance(raised.value, TimeoutError)
    assert isinstance(raised.value, OSError)
    assert str(raised.value) == (
        "Data Exchange: download of a.txt failed [timed out (0.2 s) after 4 attempts]"
    )
    assert not (destination / "a.txt").exists()


async def test_429_waits_for_retry_after(
    fake: MindSphereFake, folders: MindSphereFolderStore
) -> None:
    """A 429 is retried after the Retry-After the service asked for."""
    fake.fail_next(ROUTE_LIST_DIRECTORY, 1, status=429, retry_after="1")
    started = time.monotonic()

    assert await within(folders.exists(TENANT, PUBLIC_ROOT)) is True

    assert time.monotonic() - started >= 0.9
    assert fake.count(ROUTE_LIST_DIRECTORY) == 2


async def test_retry_after_is_bounded(fake: MindSphereFake) -> None:
    """A Retry-After longer than the policy's bound is cut to that bound."""
    fake.fail_next(ROUTE_LIST_DIRECTORY, 1, status=429, retry_after="3600")
    policy = RetryPolicy(attempts=2, backoff=0.01, max_retry_after=0.1)
    store = MindSphereFolderStore(fake.url, _token, timeout=2.0, retry=policy)
    try:
        assert await within(store.exists(TENANT, PUBLIC_ROOT), 3.0) is True
    finally:
        await store.close()
    assert fake.count(ROUTE_LIST_DIRECTORY) == 2


# -- Data Exchange: upload --------------------------------------------------------------------


async def test_upload_creates_nested_directories_and_files(
    fake: MindSphereFake, folders: MindSphereFolderStore, tmp_path: Path
) -> None:
    """A local tree is recreated under the directory, sub-directories included."""
    folder_id = fake.add_directory(PUBLIC_ROOT, "outputs")
    source = tmp_path / "output"
    _write_tree(source, NESTED)

    await within(folders.upload(source, TENANT, folder_id))

    assert fake.tree(folder_id) == NESTED
    assert fake.count(ROUTE_CREATE_DIRECTORY) == 3
    assert fake.count(ROUTE_CREATE_FILE) == 9


async def test_upload_overwrites_existing_files_in_place(
    fake: MindSphereFake, folders: MindSphereFolderStore, tmp_path: Path
) -> None:
    """Files already there are replaced (same id), existing sub-directories reused."""
    folder_id = fake.add_directory(PUBLIC_ROOT, "outputs")
    _seed_tree(fake, folder_id, {f"keep{i}.txt": b"old" for i in range(5)})
    result_id = fake.add_file(folder_id, "result.txt", b"old result")
    plots_id = fake.add_directory(folder_id, "plots")
    fake.add_file(plots_id, "p.png", b"old plot")
    source = tmp_path / "output"
    _write_tree(source, {"result.txt": b"new result", "plots": {"p.png": b"new plot"}})

    await within(folders.upload(source, TENANT, folder_id))

    tree = fake.tree(folder_id)
    assert tree["result.txt"] == b"new result"
    assert tree["plots"] == {"p.png": b"new plot"}
    assert all(tree[f"keep{i}.txt"] == b"old" for i in range(5))
    assert [f.id for f in fake.file_named(folder_id, "result.txt")] == [result_id]
    assert fake.count(ROUTE_REPLACE_FILE) == 2
    assert fake.count(ROUTE_CREATE_FILE) == 0
    assert fake.count(ROUTE_CREATE_DIRECTORY) == 0


async def test_upload_to_missing_folder_is_not_found(
    folders: MindSphereFolderStore, tmp_path: Path
) -> None:
    """Uploading into a directory that does not exist raises NotFound."""
    _write_tree(tmp_path / "output", {"result.txt": b"r"})

    with pytest.raises(NotFound, match=r"^output folder nope not found$"):
        await within(folders.upload(tmp_path / "output", TENANT, "nope"))


async def test_upload_refuses_names_data_exchange_forbids(
    fake: MindSphereFake, folders: MindSphereFolderStore, tmp_path: Path
) -> None:
    """A local name with a forbidden character fails before anything is sent."""
    folder_id = fake.add_directory(PUBLIC_ROOT, "outputs")
    _write_tree(tmp_path / "output", {"ok.txt": b"1", "sub": {"a:b.txt": b"2"}})

    with pytest.raises(MindSphereError, match=r"cannot upload sub/a:b\.txt: .* ':'"):
        await within(folders.upload(tmp_path / "output", TENANT, folder_id))

    assert fake.calls == []


async def test_post_whose_answer_is_lost_is_not_sent_twice(
    fake: MindSphereFake, tmp_path: Path
) -> None:
    """A POST that timed out after the file was created is found, not posted again."""
    folder_id = fake.add_directory(PUBLIC_ROOT, "outputs")
    fake.delay_next(ROUTE_CREATE_FILE, 30.0, after_handling=True)
    _write_tree(tmp_path / "output", {"result.txt": b"the result"})
    store = MindSphereFolderStore(fake.url, _token, timeout=0.3, retry=FAST)

    try:
        await within(store.upload(tmp_path / "output", TENANT, folder_id), 5.0)
    finally:
        await store.close()

    assert fake.count(ROUTE_CREATE_FILE) == 1
    assert len(fake.file_named(folder_id, "result.txt")) == 1
    assert fake.tree(folder_id) == {"result.txt": b"the result"}
    assert fake.count(ROUTE_REPLACE_FILE) == 1  # content sent again by the idempotent PUT


async def test_failed_post_is_checked_before_it_is_sent_again(
    fake: MindSphereFake, folders: MindSphereFolderStore, tmp_path: Path
) -> None:
    """After each 503 to a POST the parent is listed before the POST is repeated."""
    folder_id = fake.add_directory(PUBLIC_ROOT, "outputs")
    fake.fail_next(ROUTE_CREATE_FILE, 2, status=503)
    _write_tree(tmp_path / "output", {"result.txt": b"the result"})

    await within(folders.upload(tmp_path / "output", TENANT, folder_id))

    assert fake.tree(folder_id) == {"result.txt": b"the result"}
    posts = [i for i, call in enumerate(fake.calls) if call == ROUTE_CREATE_FILE]
    assert len(posts) == 3
    for before, after in itertools.pairwise(posts):
        assert ROUTE_LIST_DIRECTORY in fake.calls[before + 1 : after]


async def test_persistent_upload_failure_message(
    fake: MindSphereFake, folders: MindSphereFolderStore, tmp_path: Path
) -> None:
    """An upload that keeps failing names the file, the status and the attempts."""
    folder_id = fake.add_directory(PUBLIC_ROOT, "outputs")
    fake.fail_next(ROUTE_CREATE_FILE, 10, status=503)
    _write_tree(tmp_path / "output", {"result.txt": b"the result"})

    with pytest.raises(OSError, match=r"^Data Exchange: upload of result\.txt failed") as raised:
        await within(folders.upload(tmp_path / "output", TENANT, folder_id))

    assert str(raised.value) == (
        "Data Exchange: upload of result.txt failed [HTTP 503 after 4 attempts]"
    )
    assert fake.count(ROUTE_CREATE_FILE) == 4
    assert fake.file_named(folder_id, "result.txt") == []


async def test_close_is_idempotent_and_store_reopens(
    fake: MindSphereFake, folders: MindSphereFolderStore
) -> None:
    """close can be called twice; a later call opens a new session."""
    assert await within(folders.exists(TENANT, PUBLIC_ROOT)) is True
    await folders.close()
    await folders.close()
    assert await within(folders.exists(TENANT, PUBLIC_ROOT)) is True
