"""Browser tests: headless Debian Chromium driven by Playwright against the real stack.

Playwright's own browser builds cannot be downloaded here, so it launches the system Chromium
(`make browser` installs Debian's package). A missing browser fails the run: these tests never
skip.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.service import Service, fresh_settings, running_service

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking switches Chromium keeps retrying refused connections to
# its update and sync services on a closed network, and pages stall behind them.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1440, "height": 900}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver, closed after the browser tests: its loop would break async tests."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless Debian Chromium; fails with the fix when it is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium package "
            "(`make browser` installs it; `make test` does so first)",
            pytrace=False,
        )
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture(scope="package")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One `jobmanager serve` (gateway, worker, scheduler) for every browser test."""
    root = tmp_path_factory.mktemp("browser-stack")
    settings = fresh_settings(kafka_bootstrap, root / "home", broker_ack_timeout_seconds=10.0)
    with running_service(settings, root / "serve.log") as service:
        yield service


@pytest.fixture(scope="package")
def token(stack: Service) -> str:
    """A read-write token for tenant "local", as `jobmanager token` prints it."""
    return stack.cli("token")


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies) per test."""
    fresh = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    fresh.set_default_timeout(15_000)
    try:
        yield fresh
    finally:
        fresh.close()


@pytest.fixture
def page(context: BrowserContext, stack: Service, token: str) -> Page:
    """A page already signed in through the gateway's cookie login."""
    answer = context.request.post(
        f"{stack.url}/ui/login",
        data=json.dumps({"token": token}),
        headers={"Content-Type": "application/json"},
    )
    assert answer.ok, answer.text()
    return context.new_page()


def note_file(directory: Path, name: str, *texts: str) -> Path:
    """A Zeppelin note with one paragraph per text, written to ``directory``."""
    note: dict[str, Any] = {
        "name": name,
        "paragraphs": [{"title": f"Step {i + 1}", "text": text} for i, text in enumerate(texts)],
    }
    path = directory / f"{name}.zpln"
    path.write_text(json.dumps(note))
    return path
