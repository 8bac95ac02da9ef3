"""The web UI in headless Chromium against the real gateway, worker and broker."""

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import note_file
from tests.conftest import FIXTURES
from tests.service import FINAL, Service

pytestmark = pytest.mark.kafka

JOBS = "/api/jobmanager/v3/jobs"
LIVE = 60_000  # ms a job may take to reach its final status (kernel start included)


def _submit(stack: Service, token: str, note: Path) -> dict[str, Any]:
    answer = stack.request("POST", JOBS, stack.job_body(note), token=token)
    assert answer.status == 201, answer.body
    job: dict[str, Any] = answer.body
    return job


def _status(page: Page) -> Any:
    return page.locator("#job-status .badge")


def _navigations(page: Page) -> list[str]:
    """URLs the page's main frame navigated to from now on (to prove nothing reloads)."""
    seen: list[str] = []
    page.on(
        "framenavigated", lambda frame: seen.append(frame.url) if frame is page.main_frame else None
    )
    return seen


def test_sign_in_submit_and_watch_the_job_succeed_live(
    context: BrowserContext, stack: Service, token: str
) -> None:
    """Paste a token, submit a job with the form, and see it reach SUCCEEDED without reloading."""
    page = context.new_page()
    page.goto(f"{stack.url}/")
    page.get_by_label("Access token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.locator("#who")).to_contain_text("tenant local")

    body = stack.job_body(FIXTURES / "notes" / "success.zpln")
    page.get_by_role("link", name="Submit a job").click()
    for name, label in [
        ("modelId", "Model"),
        ("configurationId", "Configuration"),
        ("inputFolderId", "Input folder"),
        ("outputFolderId", "Output folder"),
    ]:
        page.get_by_label(label, exact=True).fill(body[name])
    page.get_by_role("button", name="Submit job").click()

    page.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f]+$"))
    navigations = _navigations(page)
    job_id = page.url.rsplit("/", 1)[1]
    expect(_status(page)).to_have_text("SUCCEEDED", timeout=LIVE)
    assert navigations == [], "the page reloaded instead of updating live"
    timeline = page.locator("#timeline li.move .badge")
    expect(timeline).to_have_text(["SUBMITTED", "STARTING", "RUNNING", "SUCCEEDED"])
    expect(page.locator("[data-paragraph-status]").first).to_be_visible()
    expect(page.locator("#stop")).to_have_count(0)
    assert stack.request("GET", f"{JOBS}/{job_id}", token=token).body["status"] == "SUCCEEDED"

    page.get_by_role("link", name=body["outputFolderId"]).click()
    expect(page.locator("#files tbody th")).to_have_text(["listing.txt", "result.txt"])
    with page.expect_download() as download:
        page.get_by_role("link", name="result.txt").click()
    assert Path(download.value.path()).read_text() == "total=30\n"


def test_jobs_table_shows_a_new_job_and_its_moves_live(
    page: Page, stack: Service, token: str
) -> None:
    """A job submitted elsewhere appears at the top of the table and its badge follows it."""
    page.goto(f"{stack.url}/ui/")
    expect(page.locator(".live")).to_have_attribute("data-state", "open")
    navigations = _navigations(page)
    job = _submit(stack, token, FIXTURES / "notes" / "success.zpln")
    row = page.locator(f'#jobs tr[data-job-id="{job["id"]}"]')
    expect(row).to_be_visible()
    expect(page.locator("#jobs tbody tr").first).to_have_attribute("data-job-id", job["id"])
    expect(row.locator(".badge")).to_have_text("SUCCEEDED", timeout=LIVE)
    expect(row.locator("td.duration")).not_to_be_empty()
    expect(page.locator("#announcer")).to_contain_text(job["id"])
    assert navigations == [], "the table reloaded the page instead of updating live"

    page.get_by_label("Status").select_option("FAILED")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#jobs tbody tr").first).not_to_have_attribute("data-job-id", job["id"])
    assert "status=FAILED" in page.url


def test_submit_form_shows_the_apis_validation_messages(page: Page, stack: Service) -> None:
    """An incomplete form gets the API's messages next to the fields, and stays on the form."""
    page.goto(f"{stack.url}/ui/submit")
    page.get_by_label("Maximum time (seconds)").fill("soon")
    page.get_by_role("button", name="Submit job").click()
    expect(page.get_by_role("alert")).to_contain_text("modelId: is required")
    model = page.get_by_label("Model", exact=True)
    expect(model).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#s-modelId-error")).to_have_text("is required")
    expect(page.locator("#s-maximumExecutionTimeInSeconds-error")).to_contain_text(
        "whole number of seconds"
    )
    assert page.url.endswith("/ui/submit")


def test_failed_job_shows_the_failing_paragraphs_error(
    page: Page, stack: Service, token: str
) -> None:
    """The job page of a FAILED job marks the paragraph that failed and shows its error."""
    job = _submit(stack, token, FIXTURES / "notes" / "failing.zpln")
    stack.wait_for_status(job["id"], token, FINAL)
    page.goto(f"{stack.url}/ui/jobs/{job['id']}")
    expect(_status(page)).to_have_text("FAILED")
    failed = page.locator('[data-paragraph-status="ERROR"]')
    expect(failed).to_have_count(1)
    expect(failed.get_by_role("heading")).to_have_text("1. Divide")
    expect(failed.locator(".paragraph-error")).to_contain_text("ZeroDivisionError")
    failed.get_by_text("Traceback", exact=True).click()
    expect(failed.locator("details pre")).to_contain_text("numerator / 0")
    expect(page.locator('[data-paragraph-status="FINISHED"]')).to_have_count(1)
    expect(page.locator("#job-message")).to_contain_text("Divide")


def test_stop_a_running_job(page: Page, stack: Service, token: str, tmp_path: Path) -> None:
    """The Stop button (a cookie session, so with the XSRF header) ends a running job STOPPED."""
    note = note_file(tmp_path, "sleepy", "%python\nimport time\ntime.sleep(20)")
    job = _submit(stack, token, note)
    stack.wait_for_status(job["id"], token, {"RUNNING"})
    page.goto(f"{stack.url}/ui/jobs/{job['id']}")
    expect(_status(page)).to_have_text("RUNNING")
    page.get_by_role("button", name="Stop job").click()
    expect(_status(page)).to_have_text("STOPPED", timeout=30_000)
    expect(page.locator("#timeline li.move .badge").last).to_have_text("STOPPED")
    expect(page.locator("#stop")).to_have_count(0)


def test_outputs_render_tables_and_sandboxed_html(
    page: Page, stack: Service, token: str, tmp_path: Path
) -> None:
    """%table output is a table; %html renders in a sandbox where its script cannot run."""
    note = note_file(
        tmp_path,
        "outputs",
        '%python\nprint("%table city\\tpeople\\nBerlin\\t3850809\\nMunich\\t1510378")',
        "%html <h2 id='inside'>Hello</h2><script>parent.document.title = 'owned'</script>"
        "<img src=x onerror=\"parent.document.title = 'owned'\">",
    )
    job = _submit(stack, token, note)
    stack.wait_for_status(job["id"], token, FINAL)
    page.goto(f"{stack.url}/ui/jobs/{job['id']}")
    expect(_status(page)).to_have_text("SUCCEEDED")
    table = page.locator(".output-table")
    expect(table.locator("thead th")).to_have_text(["city", "people"])
    expect(table.locator("tbody tr")).to_have_count(2)
    frame = page.locator("iframe.html-output")
    expect(frame).to_have_attribute("sandbox", "")
    expect(page.frame_locator("iframe.html-output").locator("#inside")).to_have_text("Hello")
    assert "owned" not in page.title()


def test_schedules_list_starts_and_stops(page: Page, stack: Service, token: str) -> None:
    """A schedule can be started and stopped from the list, which shows its next fire times."""
    body = stack.job_body(FIXTURES / "notes" / "success.zpln")
    schedule = {
        "name": "new year",
        "modelId": body["modelId"],
        "configurationId": body["configurationId"],
        "inputFolderId": body["inputFolderId"],
        "outputFolderId": body["outputFolderId"],
        "maximumExecutionTime": "600",
        "scheduleString": "0 0 1 1 *",
        "timezone": "UTC",
    }
    created = stack.request("POST", "/api/jobmanager/v3/schedules", schedule, token=token)
    assert created.status == 201, created.body
    page.goto(f"{stack.url}/ui/schedules")
    row = page.locator(f"#schedule-{created.body['id']}")
    expect(row.get_by_role("rowheader")).to_have_text("new year")
    expect(row.locator(".badge")).to_have_text("STOPPED")
    row.get_by_role("button", name="Start schedule new year").click()
    expect(row.locator(".badge")).to_have_text("RUNNING")
    expect(row.locator("time").first).to_have_attribute("datetime", re.compile(r"-01-01T00:00"))
    row.get_by_role("button", name="Stop schedule new year").click()
    expect(row.locator(".badge")).to_have_text("STOPPED")


def test_screenshots_for_the_readme(page: Page, stack: Service, token: str, tmp_path: Path) -> None:
    """Screenshots of a real run; `make screenshots` writes them to docs/img for the README.

    Otherwise they go to a temporary folder, so a test run leaves the working tree unchanged.
    """
    note = note_file(
        tmp_path,
        "report",
        "%md ## Daily report",
        '%python\nprint("Rows read: 2")\nprint("%table region\\tsales\\nnorth\\t120\\nsouth\\t95")',
    )
    job = _submit(stack, token, note)
    stack.wait_for_status(job["id"], token, FINAL)
    target = os.environ.get("JOBMANAGER_SCREENSHOTS_DIR")
    images = Path(target) if target else tmp_path / "img"
    images.mkdir(parents=True, exist_ok=True)

    page.goto(f"{stack.url}/ui/")
    expect(page.locator(f'#jobs tr[data-job-id="{job["id"]}"] .badge')).to_have_text("SUCCEEDED")
    page.screenshot(path=str(images / "jobs.png"))
    page.goto(f"{stack.url}/ui/jobs/{job['id']}")
    expect(page.locator(".output-table")).to_be_visible()
    page.screenshot(path=str(images / "job.png"), full_page=True)
    for name in ("jobs.png", "job.png"):
        assert (images / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_signed_out_pages_ask_for_a_token(context: BrowserContext, stack: Service) -> None:
    """Without a session every page shows the sign-in form, and a bad token is refused there."""
    page = context.new_page()
    page.goto(f"{stack.url}/ui/jobs/anything")
    token = page.get_by_label("Access token")
    expect(token).to_be_focused()
    token.fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-error")).to_have_text("token is malformed")
    expect(token).to_have_attribute("aria-invalid", "true")
    assert json.loads(page.evaluate("JSON.stringify(document.cookie)")) == ""
