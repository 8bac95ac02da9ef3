"""The web UI's read-only folder view: listing, downloads, and what it must never serve."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.local_files import LocalHome
from tests.unit.test_gateway import OTHER_TENANT, TENANT, Api, _error
from tests.unit.test_ui_routes import _gateway

FOLDERS = "/ui/api/folders"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The gateway with its UI over a local home holding one folder of tenant A."""
    home = LocalHome(tmp_path / "home")
    folder = home.folder(TENANT, "out-1")
    (folder / "nested").mkdir(parents=True)
    (folder / "result.txt").write_text("total=30\n")
    (folder / "nested" / "page.html").write_text("<script>alert(1)</script>")
    (tmp_path / "secret.txt").write_text("not yours")
    (folder / "link.txt").symlink_to(tmp_path / "secret.txt")
    gateway, _, api = _gateway(folders=home)
    async with TestClient(TestServer(gateway.app())) as client:
        api.client = client
        yield api


async def test_listing_names_the_files_but_not_links_out(api: Api) -> None:
    """Every regular file, nested ones with their path; a symbolic link is left out."""
    response = await api.client.get(f"{FOLDERS}/out-1", headers=api.headers())
    assert response.status == 200, await response.text()
    body = await response.json()
    assert [f["path"] for f in body["files"]] == ["result.txt", "nested/page.html"]
    assert body["files"][0]["size"] == len("total=30\n")
    assert body["truncated"] is False


async def test_a_file_is_always_a_download(api: Api) -> None:
    """Files come as attachments of an opaque type, so stored HTML never renders here."""
    response = await api.client.get(
        f"{FOLDERS}/out-1/files/nested/page.html", headers=api.headers()
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert await response.read() == b"<script>alert(1)</script>"


@pytest.mark.parametrize(
    "path",
    [
        "out-1/files/..%2F..%2F..%2Fsecret.txt",
        "out-1/files/link.txt",
        "out-1/files/missing.txt",
        "out-1/files/nested",
        "..",
        "missing-folder",
    ],
)
async def test_nothing_outside_the_folder_is_served(api: Api, path: str) -> None:
    """Traversal, symbolic links, directories and unknown names are all a plain 404."""
    await _error(await api.client.get(f"{FOLDERS}/{path}", headers=api.headers()), 404)


async def test_another_tenants_folder_is_not_found(api: Api) -> None:
    """A folder id of tenant A means nothing to tenant B."""
    await _error(await api.client.get(f"{FOLDERS}/out-1", headers=api.headers(OTHER_TENANT)), 404)
    await _error(await api.client.get(f"{FOLDERS}/out-1"), 401)


async def test_without_local_stores_folders_are_not_browsable(tmp_path: Path) -> None:
    """A gateway not given local folders answers 404 with the reason."""
    gateway, _, api = _gateway()
    async with TestClient(TestServer(gateway.app())) as client:
        api.client = client
        error = await _error(await client.get(f"{FOLDERS}/out-1", headers=api.headers()), 404)
        assert "not browsable" in error["message"]
