"""P10: hostile HTTP input gets a 4xx, never a 5xx or a hang, and writes nothing; tenants are
walled off from each other.

One real ``jobmanager serve`` with two tenants: "local" owns a finished and a running job,
"intruder" tries everything against them. The hand-written cases go over raw sockets, so bytes
no HTTP library would send (bad UTF-8, CR in a header, a 10 MB body, 100 000 nested brackets)
reach the server as written; each has a deadline, and running out of it counts as a hang.
Then schemathesis fuzzes every operation as the intruder, with the owner's real job ids in the
path: no server error, and never a 2xx that shows, stops or lists another tenant's job. The
schema-driven contract run over all operations is ``tests/e2e/test_openapi_contract.py``.
"""

import contextlib
import json
import re
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import hypothesis
import jwt
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from adapters.http.openapi import openapi_document
from tests.reliability.figures import record
from tests.reliability.live import JOBS, TENANT, job_body, read_topic, token, wait_all_final
from tests.service import Service, fresh_settings, running_service
from worker.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.reliability, pytest.mark.timeout(240)]

INTRUDER = "intruder"
DEADLINE_SECONDS = 10.0  # per request: an answer later than this is a hang
FUZZ_EXAMPLES = 30  # per operation
SLOW_NOTE = {
    "name": "slow",
    "paragraphs": [{"title": "Wait", "text": "%python\nimport time\ntime.sleep(300)"}],
}


@dataclass
class Answer:
    status: int | None  # None: no answer within the deadline (a hang) or connection dropped
    headers: dict[str, str]
    body: bytes
    hung: bool = False


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    cases: int = 0
    fuzzed: int = 0
    leaks: list[str] = field(default_factory=list)


TALLY = Tally()


@dataclass(frozen=True)
class Owner:
    """What tenant "local" owns: a final job and a running one."""

    finished: str
    running: str
    body: dict[str, str]
    key: str


@pytest.fixture(scope="module")
def hostile_settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """As ``tests/conftest.py``'s ``settings``, for the whole module, with the rate limit
    lifted (P11 tests the limit) and a short shutdown (a job is left running)."""
    return fresh_settings(
        kafka_bootstrap,
        tmp_path_factory.mktemp("hostile") / "home",
        broker_ack_timeout_seconds=10.0,
        rate_limit_per_second=100_000.0,
        shutdown_grace_seconds=0.5,
    )


@pytest.fixture(scope="module")
def service(
    hostile_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("hostile-log") / "serve.log"
    with running_service(hostile_settings, log) as running:
        yield running


@pytest.fixture(scope="module")
def owner(
    service: Service, hostile_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Owner:
    settings = hostile_settings
    bearer = token(settings)
    finished = service.request("POST", JOBS, job_body(settings), bearer)
    assert finished.status == 201, finished.body
    slow = tmp_path_factory.mktemp("notes") / "slow.zpln"
    slow.write_text(json.dumps(SLOW_NOTE))
    body, key = job_body(settings, str(slow)), uuid.uuid4().hex
    running = service.raw(
        "POST",
        JOBS,
        json.dumps(body).encode(),
        {"Authorization": f"Bearer {bearer}", "Idempotency-Key": key},
    )
    assert running.status == 201, running.body
    wait_all_final(service, bearer, [finished.body["id"]])
    service.wait_for_status(running.body["id"], bearer, {"RUNNING"})
    return Owner(finished.body["id"], running.body["id"], body, key)


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    """Record what the module measured, once all its tests ran."""
    yield
    record(
        "P10",
        "test_hostile_http",
        hostile_requests=TALLY.cases,
        fuzzed_requests=TALLY.fuzzed,
        faults_injected=TALLY.cases + TALLY.fuzzed,
        server_errors=len(TALLY.server_errors),
        hangs=len(TALLY.hangs),
        tenant_leaks=len(TALLY.leaks),
        **{f"status_{status}": count for status, count in sorted(TALLY.statuses.items())},
    )


# -- raw HTTP -----------------------------------------------------------------------------------


def exchange(service: Service, raw: bytes, label: str) -> Answer:
    """Send ``raw`` as written and read the answer (the request must say Connection: close)."""
    where = urlsplit(service.url)
    started = time.monotonic()
    chunks: list[bytes] = []
    hung = False
    with socket.create_connection((where.hostname, where.port), timeout=DEADLINE_SECONDS) as sock:
        # The server may answer and close before taking it all; that answer is read below.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if time.monotonic() - started > DEADLINE_SECONDS:
                    hung = True
                    break
        except TimeoutError:
            hung = True
        except ConnectionResetError:
            pass
    answer = _parse(b"".join(chunks))
    answer.hung = hung
    _count(label, answer.status, hung)
    return answer


def _parse(data: bytes) -> Answer:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0]) if lines and lines[0] else None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(match.group(1)) if match else None, headers, body)


def _count(label: str, status: int | None, hung: bool) -> None:
    TALLY.cases += 1
    TALLY.statuses[str(status) if status is not None else "none"] += 1
    if hung:
        TALLY.hangs.append(label)
    elif status is not None and status >= 500:
        TALLY.server_errors.append(f"{label}: {status}")


def request(
    method: str,
    path: bytes | str,
    *,
    bearer: str | None = None,
    body: bytes | None = None,
    headers: Mapping[str, bytes | str] | None = None,
    content_type: str = "application/json",
) -> bytes:
    """A raw HTTP/1.1 request; ``path`` and header values go out byte for byte."""
    path_bytes = path.encode("latin-1") if isinstance(path, str) else path
    lines = [method.encode() + b" " + path_bytes + b" HTTP/1.1", b"Host: 127.0.0.1"]
    if bearer is not None:
        lines.append(f"Authorization: Bearer {bearer}".encode())
    for name, value in (headers or {}).items():
        lines.append(
            name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        )
    if body is not None:
        lines.append(f"Content-Type: {content_type}".encode())
        lines.append(f"Content-Length: {len(body)}".encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def _written(settings: Settings) -> tuple[int, list[str]]:
    """What could have been written: commands on the topic, and files under the home."""
    commands = len(read_topic(settings.kafka_bootstrap_servers, settings.commands_topic))
    files = sorted(str(p.relative_to(settings.home)) for p in Path(settings.home).rglob("*"))
    return commands, [f for f in files if not f.startswith("workspaces")]


# -- hand-written hostile cases ---------------------------------------------------------------


def _hostile_cases(bearer: str, owner: Owner) -> list[tuple[str, bytes, set[int]]]:
    """(label, raw request, acceptable statuses)."""
    body = json.dumps(owner.body).encode()
    other_secret = jwt.encode(
        {"ten": TENANT, "sub": "x", "scope": ["jm.rw"], "exp": int(time.time()) + 600},
        "not-the-secret-but-long-enough-for-hs256-keys",
        algorithm="HS256",
    )
    unsigned = jwt.encode(
        {"ten": TENANT, "sub": "x", "scope": ["jm.rw"], "exp": int(time.time()) + 600},
        "",
        algorithm="none",
    )
    expired = jwt.encode(
        {"ten": TENANT, "sub": "x", "scope": ["jm.rw"], "exp": int(time.time()) - 60},
        "whatever-secret-of-thirty-two-bytes!",
        algorithm="HS256",
    )
    traversal = [
        "/api/jobmanager/v3/jobs/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/jobmanager/v3/jobs/%2e%2e",
        "/api/jobmanager/v3/jobs/..%5C..%5Cwindows",
        "/api/jobmanager/v3/jobs/%00",
        "/api/jobmanager/v3/jobs/a%0d%0aX-Evil:%201",
        "/api/jobmanager/v3/jobs/../../../../etc/passwd",
        "/api/jobmanager/v3/jobs/" + "a" * 8000,
        f"/api/jobmanager/v3/jobs/{owner.finished}%2F..%2F{owner.running}/paragraphs",
    ]
    cases: list[tuple[str, bytes, set[int]]] = [
        (f"GET {p[:60]}", request("GET", p, bearer=bearer), {400, 404, 414, 431}) for p in traversal
    ]
    bad_ids = ["../../etc", "..", ".", "a/b", "a\\b", "x\u0000y", "é" * 300, ""]
    cases += [
        (
            f"POST modelId={bad!r:.20}",
            request(
                "POST",
                JOBS,
                bearer=bearer,
                body=json.dumps({**owner.body, "modelId": bad}).encode(),
            ),
            {400},
        )
        for bad in bad_ids
    ]
    numbers: list[Any] = ["1e309", -1, 10**100, "7200.5", None, [], {}, "0x10", "\u0661"]
    cases += [
        (
            f"POST seconds={bad!r:.20}",
            request(
                "POST",
                JOBS,
                bearer=bearer,
                body=json.dumps({**owner.body, "maximumExecutionTimeInSeconds": bad}).encode(),
            ),
            {400},
        )
        for bad in numbers
    ]

    def post(payload: bytes, **options: Any) -> bytes:
        return request("POST", JOBS, bearer=bearer, body=payload, **options)

    def get(path: bytes | str = JOBS, **options: Any) -> bytes:
        return request("GET", path, **{"bearer": bearer, **options})

    def key(value: bytes | str) -> dict[str, bytes | str]:
        return {"Idempotency-Key": value}

    chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    chunks = b"".join(b"10000\r\n" + b"a" * 0x10000 + b"\r\n" for _ in range(32))
    padded = json.dumps({**owner.body, "pad": "x" * 10**6}).encode()
    smuggling = (
        b"POST " + JOBS.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + bearer.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: 4"
        + b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
    )  # fmt: skip
    tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n"
    bad_method = b"G\x00T " + JOBS.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    cases += [
        ("POST 10 MB body", post(b" " * 10_000_000), {413}),
        ("POST 1 MB valid JSON", post(padded), {413}),
        ("POST chunked 2 MB", request("POST", JOBS, bearer=bearer, headers=chunked) + chunks
         + b"0\r\n\r\n", {413}),
        ("POST deep JSON", post(b"[" * 30_000 + b"]" * 30_000), {400}),
        ("POST deep object", post(b'{"a":' * 10_000 + b"1" + b"}" * 10_000), {400}),
        ("POST bad UTF-8", post(body.replace(b'"modelId": "', b'"modelId": "\xff\xfe')), {400}),
        ("POST not JSON", post(b"modelId=a&x=1"), {400}),
        ("POST JSON array", post(b"[1,2,3]"), {400}),
        ("POST text/plain", post(body, content_type="text/plain"), {415}),
        ("POST NUL bytes", post(b"\x00" * 1000), {400}),
        ("POST Idempotency-Key with CR", post(body, headers=key(b"k\rX-Evil: 1")), {400}),
        ("POST Idempotency-Key with LF", post(body, headers=key(b"k\nX-Evil: 1")), {400}),
        ("POST Idempotency-Key bad UTF-8", post(body, headers=key(b"\xff\xfe")), {400}),
        ("POST Idempotency-Key 10 kB", post(body, headers=key("k" * 10_000)), {400, 431}),
        ("GET X-Request-Id injection", get(headers={"X-Request-Id": b"a\rX-Evil: 1"}), {400}),
        ("GET 200 kB header", get(headers={"X-Big": "b" * 200_000}), {400, 431}),
        ("GET 500 headers", get(headers={f"X-H{i}": "v" for i in range(500)}), {200, 400, 431}),
        ("GET bad UTF-8 path", get(b"/api/jobmanager/v3/jobs/\xff\xfe"), {400, 404}),
        ("GET filter deep", get(JOBS + "?filter=" + "%7B%22or%22%3A%5B" * 2000), {400, 414}),
        ("GET filter not JSON", get(JOBS + "?filter=%7Bnope"), {400}),
        ("GET pageSize huge", get(JOBS + "?pageSize=" + "9" * 40), {400}),
        ("GET pageNumber negative", get(JOBS + "?pageNumber=-1"), {400}),
        ("GET no token", request("GET", JOBS), {401}),
        ("GET token of another secret", get(bearer=other_secret), {401}),
        ("GET unsigned token", get(bearer=unsigned), {401}),
        ("GET expired token", get(bearer=expired), {401}),
        ("GET garbage token", get(bearer="a.b.c"), {401}),
        ("GET token bad UTF-8", get(bearer=None, headers={"Authorization": b"Bearer \xff"}), {401}),
        ("DELETE job", request("DELETE", f"{JOBS}/{owner.finished}", bearer=bearer), {405}),
        ("TRACE", request("TRACE", JOBS, bearer=bearer), {405}),
        ("POST stop with a body", request("POST", f"{JOBS}/{owner.finished}/stop", bearer=bearer,
         body=b"\xff" * 10_000), {409}),
        ("TLS hello on the HTTP port", tls_hello, {400}),
        ("unknown HTTP version", b"GET / HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n", {400}),
        ("NUL in the method", bad_method, {400, 405}),
        ("Content-Length and chunked (request smuggling)", smuggling, {400}),
    ]  # fmt: skip
    return cases


def test_hostile_requests_get_4xx_and_write_nothing(
    service: Service, hostile_settings: Settings, owner: Owner
) -> None:
    """Every hand-written hostile request is refused with a 4xx in time, and nothing is written."""
    bearer = token(hostile_settings)
    before = _written(hostile_settings)
    wrong: list[str] = []
    for label, raw, acceptable in _hostile_cases(bearer, owner):
        answer = exchange(service, raw, label)
        injected = [h for h in answer.headers if h.startswith("x-evil")]
        if answer.hung or answer.status not in acceptable or injected:
            wrong.append(
                f"{label}: {answer.status} (expected {sorted(acceptable)}) {answer.body[:120]!r}"
            )
    after = _written(hostile_settings)
    alive = service.request("GET", f"{JOBS}/{owner.finished}", token=bearer)

    assert not wrong, "\n".join(wrong)
    assert not TALLY.hangs, TALLY.hangs
    assert not TALLY.server_errors, TALLY.server_errors
    assert after == before, "a refused request wrote something"
    assert alive.status == 200, "the gateway still answers"


# -- tenant isolation -------------------------------------------------------------------------


def _masked(body: bytes, *ids: str) -> Any:
    """An error body with the request's own parts (logref, the id asked for) blanked."""
    text = body.decode()
    for job_id in ids:
        text = text.replace(job_id, "<id>")
    parsed = json.loads(text)
    for error in parsed.get("errors", []):
        error["logref"] = "<logref>"
    return parsed


def test_another_tenant_can_neither_see_nor_touch_nor_infer(
    service: Service, hostile_settings: Settings, owner: Owner
) -> None:
    """The intruder's GET, paragraphs, stop and list of the owner's jobs look like unknown ids."""
    intruder = token(hostile_settings, INTRUDER)
    bearer = token(hostile_settings)
    before = _written(hostile_settings)
    unknown = uuid.uuid4().hex
    leaks = []
    for path in ("", "/paragraphs", "/stop"):
        method = "POST" if path == "/stop" else "GET"
        for job_id in (owner.finished, owner.running):
            theirs = exchange(
                service,
                request(method, f"{JOBS}/{job_id}{path}", bearer=intruder),
                f"{method} foreign{path}",
            )
            nobody = exchange(
                service,
                request(method, f"{JOBS}/{unknown}{path}", bearer=intruder),
                f"{method} unknown{path}",
            )
            what = f"{method} {path or '/'}"
            same = _masked(theirs.body, job_id) == _masked(nobody.body, unknown)
            if theirs.status != 404 or not same:
                leaks.append(
                    f"{what}: {theirs.status} {theirs.body[:200]!r} ≠ {nobody.body[:200]!r}"
                )
            if set(theirs.headers) - {"date"} != set(nobody.headers) - {"date"}:
                leaks.append(f"{what}: headers {sorted(theirs.headers)} ≠ {sorted(nobody.headers)}")
    filters = [
        {},
        {"modelId": owner.body["modelId"]},
        {"status": {"in": ["RUNNING", "SUCCEEDED", "FAILED"]}},
        {"message": {"contains": ""}},
    ]
    for selected in filters:
        query = f"?filter={quote(json.dumps(selected))}" if selected else ""
        listed = service.request("GET", JOBS + query, token=intruder)
        if listed.status != 200 or listed.body["totalElements"] != 0:
            leaks.append(f"list {query}: {listed.status} {str(listed.body)[:200]}")
        TALLY.cases += 1
    after = _written(hostile_settings)
    still = service.request("GET", f"{JOBS}/{owner.running}", token=bearer).body

    # The same Idempotency-Key names a different job per tenant: the key reveals nothing.
    reused = service.raw(
        "POST",
        JOBS,
        json.dumps(owner.body).encode(),
        {"Authorization": f"Bearer {intruder}", "Idempotency-Key": owner.key},
    )
    TALLY.cases += 1
    if reused.status != 201 or reused.body["id"] == owner.running:
        leaks.append(f"Idempotency-Key reuse: {reused.status} {reused.body}")
    TALLY.leaks.extend(leaks)

    assert not leaks, "\n".join(leaks)
    assert after == before, "the intruder's refused calls wrote something"
    assert still["status"] == "RUNNING", "the intruder's stop reached the job"


# -- fuzzing as the intruder --------------------------------------------------------------------

schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.update(request_timeout=DEADLINE_SECONDS)
schema.config.phases.update(phases=["fuzzing"])
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=FUZZ_EXAMPLES,
    deterministic=True,
    database="none",
    with_security_parameters=False,
)
_owned: list[str] = []


@hypothesis.settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
@schema.parametrize()
def test_fuzzing_as_another_tenant(
    case: schemathesis.Case[Any], service: Service, hostile_settings: Settings, owner: Owner
) -> None:
    """Fuzzed requests of another tenant, aimed at the owner's job ids: no 5xx, no 2xx on them."""
    intruder = token(hostile_settings, INTRUDER)
    aimed = False
    if "id" in (case.path_parameters or {}):
        # Every other request is aimed at one of the owner's real jobs.
        _owned.append(case.path_parameters["id"])
        if len(_owned) % 2:
            case.path_parameters["id"] = (owner.finished, owner.running)[len(_owned) // 2 % 2]
            aimed = True
    TALLY.fuzzed += 1
    started = time.monotonic()
    try:
        response = case.call(base_url=service.url, headers={"Authorization": f"Bearer {intruder}"})
    except Exception as failed:  # a timeout or a dropped connection counts as a hang
        TALLY.hangs.append(f"{case.operation.label}: {failed!r}"[:300])
        raise
    TALLY.statuses[str(response.status_code)] += 1
    if response.status_code >= 500:
        TALLY.server_errors.append(f"{case.operation.label}: {response.status_code}")
    if aimed and 200 <= response.status_code < 300:
        TALLY.leaks.append(f"{case.operation.label} on the owner's job: {response.status_code}")
    case.validate_response(response, checks=[not_a_server_error])
    assert time.monotonic() - started < DEADLINE_SECONDS
    assert not (aimed and 200 <= response.status_code < 300), response.text[:300]
    if case.operation.label == "GET /api/jobmanager/v3/jobs" and response.status_code == 200:
        shown = {item["id"] for item in response.json().get("content", [])}
        assert not shown & {owner.finished, owner.running}, "the owner's jobs in the list"
