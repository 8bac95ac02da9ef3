"""Bearer and cookie-session JWTs: HS256, RS256 via a local JWKS server, scopes and XSRF."""

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from adapters.http import auth
from adapters.http.auth import (
    Authenticator,
    AuthSettings,
    Forbidden,
    Principal,
    Unauthorized,
    mint,
    new_xsrf_token,
    redact,
)

SECRET = "a-local-shared-secret-of-at-least-32-bytes"
TENANT = "acme"


@dataclass
class Jwks:
    """A JWKS endpoint on 127.0.0.1 whose keys and behaviour a test can change."""

    url: str
    keys: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    status: int = 200
    body: str | None = None
    hang: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Clock:
    """Stands in for time.monotonic in the JWKS refetch limit."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_keys() -> dict[str, rsa.RSAPrivateKey]:
    """Two RSA key pairs by kid, for signing and rotation."""
    return {"key-1": _rsa_key(), "key-2": _rsa_key()}


def _jwk(kid: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


@pytest.fixture
async def jwks(rsa_keys: dict[str, rsa.RSAPrivateKey]) -> AsyncIterator[Jwks]:
    """A running JWKS server that publishes key-1 and counts its requests."""
    state = Jwks(url="")

    async def handle(request: web.Request) -> web.Response:
        state.requests += 1
        if state.hang:
            await state.release.wait()
        if state.body is not None:
            return web.Response(text=state.body, status=state.status)
        return web.json_response({"keys": state.keys}, status=state.status)

    app = web.Application()
    app.router.add_get("/jwks", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/jwks"))
    state.keys = [_jwk("key-1", rsa_keys["key-1"])]
    yield state
    state.release.set()
    await server.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A hand-moved clock for the JWKS refetch limit."""
    fake = Clock()
    monkeypatch.setattr(auth, "_monotonic", fake)
    return fake


@pytest.fixture
async def make_auth() -> AsyncIterator[Callable[..., Authenticator]]:
    """Builds Authenticators from AuthSettings fields and closes them after the test."""
    made: list[Authenticator] = []

    def make(**settings: Any) -> Authenticator:
        authenticator = Authenticator(AuthSettings(**settings))
        made.append(authenticator)
        return authenticator

    yield make
    for authenticator in made:
        await authenticator.close()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "ten": TENANT,
        "sub": "user-id",
        "user_name": "ada@example.com",
        "scope": ["jm.rw"],
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def hs256(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), secret, algorithm="HS256")


def rs256(key: rsa.RSAPrivateKey, kid: str = "key-1", **overrides: Any) -> str:
    return jwt.encode(_claims(**overrides), key, algorithm="RS256", headers={"kid": kid})


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _hs256_signed_with_public_key(key: rsa.RSAPrivateKey, kid: str) -> str:
    """The classic confusion attack, crafted by hand (PyJWT refuses PEM keys as HMAC secrets)."""
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(_claims()).encode())
    signing_input = header + b"." + payload
    signature = _b64(hmac.new(pem, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


def unsigned(**overrides: Any) -> str:
    """An alg-none token, built by hand."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return (header + b"." + _b64(json.dumps(_claims(**overrides)).encode()) + b".").decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def refused(
    call: Awaitable[Principal], error: type[Exception], token: str | None = None
) -> str:
    """Awaits call, expecting error; returns its message, checked not to echo the token."""
    with pytest.raises(error) as raised:
        await call
    message = str(raised.value)
    assert message
    if token is not None:
        for part in filter(None, token.split(".")):
            assert part not in message
    return message


# --- HS256 ---------------------------------------------------------------------------------


async def test_hs256_token_is_accepted(make_auth: Callable[..., Authenticator]) -> None:
    """A valid HS256 bearer token yields tenant, user, scopes and write access."""
    principal = await make_auth(hs256_secret=SECRET).authenticate("POST", bearer(hs256()), {})
    assert principal == Principal(
        tenant=TENANT,
        user="ada@example.com",
        scopes=frozenset({"jm.rw"}),
        can_write=True,
        via_cookie=False,
    )


async def test_user_falls_back_to_sub(make_auth: Callable[..., Authenticator]) -> None:
    """Without user_name the user is the sub claim; with neither the token is refused."""
    authenticator = make_auth(hs256_secret=SECRET)
    principal = await authenticator.authenticate("GET", bearer(hs256(user_name=None)), {})
    assert principal.user == "user-id"
    token = hs256(user_name=None, sub=None)
    await refused(authenticator.authenticate("GET", bearer(token), {}), Unauthorized, token)


async def test_expired_token_is_refused(make_auth: Callable[..., Authenticator]) -> None:
    """exp further in the past than the leeway is refused; within the leeway it passes."""
    authenticator = make_auth(hs256_secret=SECRET)
    token = hs256(exp=int(time.time()) - 120)
    message = await refused(authenticator.authenticate("GET", bearer(token), {}), Unauthorized)
    assert "expired" in message
    await authenticator.authenticate("GET", bearer(hs256(exp=int(time.time()) - 10)), {})


async def test_token_without_exp_is_refused(make_auth: Callable[..., Authenticator]) -> None:
    """A token without exp would never expire, so it is refused."""
    token = hs256(exp=None)
    authenticator = make_auth(hs256_secret=SECRET)
    message = await refused(authenticator.authenticate("GET", bearer(token), {}), Unauthorized)
    assert "exp" in message


async def test_nbf_in_future_is_refused(make_auth: Callable[..., Authenticator]) -> None:
    """nbf beyond the leeway is refused; within the (configurable) leeway it passes."""
    soon = int(time.time()) + 10
    authenticator = make_auth(hs256_secret=SECRET)
    later = hs256(nbf=int(time.time()) + 120)
    await refused(authenticator.authenticate("GET", bearer(later), {}), Unauthorized, later)
    await authenticator.authenticate("GET", bearer(hs256(nbf=soon)), {})
    strict = make_auth(hs256_secret=SECRET, leeway_seconds=0)
    await refused(strict.authenticate("GET", bearer(hs256(nbf=soon)), {}), Unauthorized)


async def test_wrong_secret_is_refused(make_auth: Callable[..., Authenticator]) -> None:
    """A token signed with another secret is refused without echoing it."""
    token = hs256(secret="another-secret-that-is-also-32-bytes-long")
    authenticator = make_auth(hs256_secret=SECRET)
    message = await refused(
        authenticator.authenticate("GET", bearer(token), {}), Unauthorized, token
    )
    assert "signature" in message


async def test_alg_none_is_refused(make_auth: Callable[..., Authenticator], jwks: Jwks) -> None:
    """Unsigned tokens (alg none, any case) are refused in every mode."""
    plain = unsigned()
    header = _b64(json.dumps({"alg": "None", "typ": "JWT"}).encode()).decode()
    capitalised = header + "." + plain.split(".")[1] + "."
    authenticator = make_auth(hs256_secret=SECRET, jwks_url=jwks.url)
    for token in (plain, capitalised):
        await refused(authenticator.authenticate("GET", bearer(token), {}), Unauthorized, token)
    assert jwks.requests == 0


async def test_hs256_signed_with_rsa_public_key_is_refused(
    make_auth: Callable[..., Authenticator], jwks: Jwks, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    """Algorithm confusion: HS256 signed with the JWKS public key fails in both set-ups."""
    token = _hs256_signed_with_public_key(rsa_keys["key-1"], "key-1")
    both = make_auth(hs256_secret=SECRET, jwks_url=jwks.url)
    jwks_only = make_auth(jwks_url=jwks.url)
    # Warm the key cache so the public key is at hand.
    await both.authenticate("GET", bearer(rs256(rsa_keys["key-1"])), {})
    await jwks_only.authenticate("GET", bearer(rs256(rsa_keys["key-1"])), {})
    for authenticator in (both, jwks_only):
        await refused(authenticator.authenticate("GET", bearer(token), {}), Unauthorized, token)


async def test_hs256_refused_without_secret_and_rs256_without_jwks(
    make_auth: Callable[..., Authenticator], jwks: Jwks, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    """Each algorithm is accepted only when its verification material is configured."""
    hs_only = make_auth(hs256_secret=SECRET)
    jwks_only = make_auth(jwks_url=jwks.url)
    rs_token = rs256(rsa_keys["key-1"])
    assert "RS256" in await refused(hs_only.authenticate("GET", bearer(rs_token), {}), Unauthorized)
    assert "HS256" in await refused(
        jwks_only.authenticate("GET", bearer(hs256()), {}), Unauthorized
    )
    assert jwks.requests == 0


def test_authenticator_needs_a_mode() -> None:
    """Configuring neither a secret nor a JWKS URL fails fast."""
    with pytest.raises(ValueError, match="hs256_secret"):
        Authenticator(AuthSettings())


# --- RS256 via JWKS ------------------------------------------------------------------------


async def test_rs256_via_jwks_is_accepted(
    make_auth: Callable[..., Authenticator], jwks: Jwks, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    """An RS256 token verifies against the fetched JWKS, which is then cached."""
    authenticator = make_auth(jwks_url=jwks.url)
    for _ in range(3):
        principal = await authenticator.authenticate("PUT", bearer(rs256(rsa_keys["key-1"])), {})
        assert (principal.tenant, principal.can_write) == (TENANT, True)
    assert jwks.requests == 1


async def test_rs256_wrong_key_for_kid_is_refused(
    make_auth: Callable[..., Authenticator], jwks: Jwks, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    """A token signed by another key but naming a published kid fails its signature check."""
    token = rs256(rsa_keys["key-2"], kid="key-1")
    authenticator = make_auth(jwks_url=jwks.url)
    await refused(authenticator.authenticate("GET", bearer(token), {}), Unauthorized, token)


async def test_concurrent_first_requests_share_one_fetch(
    make_auth: Callable[..., Authenticator], jwks: Jwks, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    """Many concurrent requests on a cold cache fetch the JWKS once and all succeed."""
    authenticator = make_auth(jwks_url=jwks.url)
    token = rs256(rsa_keys["key-1"])
    principals = await asyncio.gather(
        *(authenticator.authenticate("GET", bearer(token), {}) for _ in range(20))
    )
    assert {principal.tenant for principal in principals} == {TENANT}
    assert jwks.requests == 1


async def test_key_rotation_refetches_once(
    make_auth: Callable[..., Authenticator],
    jwks: Jwks,
    rsa_keys: dict[str, rsa.RSAPrivateKey],
    clock: Clock,
) -> None:
    """A new kid (after the refetch interval) triggers one refetch; retired kids stop working."""
    authenticator = make_auth(jwks_url=jwks.url)
    await authenticator.authenticate("GET", bearer(rs256(rsa_keys["key-1"])), {})
    jwks.keys = [_jwk("key-2", rsa_keys["key-2"])]
    clock.now += 31
    new = rs256(rsa_keys["key-2"], kid="key-2")
    await asyncio.gather(*(authenticator.authenticate("GET", bearer(new), {}) for _ in range(5)))
    assert jwks.requests == 2
    old = rs256(rsa_keys["key-1"])
    await refused(authenticator.authenticate("GET", bearer(old), {}), Unauthorized, old)
    assert jwks.requests == 2


async def test_unknown_kid_spam_is_bounded(
    make_auth: Callable[..., Authenticator],
    jwks: Jwks,
    rsa_keys: dict[str, rsa.RSAPrivateKey],
    clock: Clock,
) -> None:
    """Garbage kids cause at most one JWKS fetch per refresh interval, sequential or not."""
    authenticator = make_auth(jwks_url=jwks.url)
    key = rsa_keys["key-2"]
    for n in range(20):
        token = rs256(key, kid=f"garbage-{n}")
        message = await refused(authenticator.authenticate("GET", bearer(token), {}), Unauthorized)
        assert "unknown key" in message
    results = await asyncio.gather(
        *(
            authenticator.authenticate("GET", bearer(rs256(key, kid=f"x-{n}")), {})
            for n in range(20)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(result, Unauthorized) for result in results)
    assert jwks.requests == 1
    clock.now += 29
    await refused(authenticator.authenticate("GET", bearer(rs256(key, kid="y")), {}), Unauthorized)
    assert jwks.requests == 1
    clock.now += 2
    await refused(authenticator.authenticate("GET", bearer(rs256(key, kid="z")), {}), Unauthorized)
    assert jwks.requests == 2
    # Known keys keep working throughout.
    await authenticator.authenticate("GET", bearer(rs256(rsa_keys["key-1"])), {})
    assert jwks.requests == 2


async def test_jwks_server_down_is_unauthorized(
    make_auth: Callable[..., Authenticator], rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    """A closed JWKS port gives a prompt 401, not a hang or a stray exception."""
    server = TestServer(web.Application(), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/jwks"))
    await server.close()
    authenticator = make_auth(jwks_url=url, jwks_timeout_seconds=2)
    token = rs256(rsa_keys["key-1"])
    async with asyncio.timeout(5):
        message = await refused(authenticator.authenticate("GET", bearer(token), {}), Unauthorized)
    assert "unavailable" in message


async def test_jwks_server_hanging_times_out(
    make_auth: Callable[..., Authenticator], jwks: Jwks, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    """A JWKS server that never answers is cut off by the timeout: 401."""
    jwks.hang = True
    authenticator = make_auth(jwks_url=jwks.url, jwks_timeout_seconds=0.2)
    started = time.monotonic()
    async with asyncio.timeout(5):
        message = await refused(
            authenticator.authenticate("GET", bearer(rs256(rsa_keys["key-1"])), {}), Unauthorized
        )
    assert "timed out" in message
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, "oops"), (200, "not json"), (200, '{"keys": "nope"}'), (200, "[]")],
)
async def test_jwks_bad_answers_are_unauthorized(
    make_auth: Callable[..., Authenticator],
    jwks: Jwks,
    rsa_keys: dict[str, rsa.RSAPrivateKey],
    status: int,
    body: str,
) -> None:
    """HTTP errors and unusable JWKS documents give 401."""
    jwks.status, jwks.body = status, body
    authenticator = make_auth(jwks_url=jwks.url)
    token = rs256(rsa_keys["key-1"])
    message = await refused(authenticator.authenticate("GET", bearer(token), {}), Unauthorized)
    assert "unavailable" in message


async def test_rs256_without_kid_is_refused(
    make_auth: Callable[..., Authenticator], jwks: Jwks, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    """An RS256 token must name its key."""
    token = jwt.encode(_claims(), rsa_keys["key-1"], algorithm="RS256")
    authenticator = make_auth(jwks_url=jwks.url)
    assert "kid" in await refused(
        authenticator.authenticate("GET", bearer(token), {}), Unauthorized
    )


# --- iss / aud / tenant --------------------------------------------------------------------


async def test_iss_and_aud_checked_only_when_configured(
    make_auth: Callable[..., Authenticator],
) -> None:
    """Unconfigured iss/aud are ignored; configured ones must match and be present."""
    lenient = make_auth(hs256_secret=SECRET)
    await lenient.authenticate("GET", bearer(hs256(iss="anyone", aud="anything")), {})
    strict = make_auth(hs256_secret=SECRET, issuer="https://issuer", audience="jobmanager")
    good = hs256(iss="https://issuer", aud=["other", "jobmanager"])
    await strict.authenticate("GET", bearer(good), {})
    for token in (
        hs256(iss="https://evil", aud="jobmanager"),
        hs256(iss="https://issuer", aud="other"),
        hs256(aud="jobmanager"),
        hs256(iss="https://issuer"),
    ):
        await refused(strict.authenticate("GET", bearer(token), {}), Unauthorized, token)


@pytest.mark.parametrize("tenant", [None, "", "../etc", "a/b", "-lead", 42, ["acme"]])
async def test_tenant_claim_missing_or_invalid(
    make_auth: Callable[..., Authenticator], tenant: Any
) -> None:
    """Without a path-safe 'ten' claim the token is refused (401)."""
    token = hs256(ten=tenant)
    authenticator = make_auth(hs256_secret=SECRET)
    message = await refused(authenticator.authenticate("GET", bearer(token), {}), Unauthorized)
    assert "ten" in message


# --- scopes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "can_write"),
    [
        (["jm.rw"], True),
        ("openid jm.rw", True),
        (["mdsp:core:jm.rw"], True),
        ("uaa.user mdsp:core:jm.rw", True),
        (["jm.r"], False),
        ("tenant.jm.r", False),
        (["mdsp:core:jm.r", "other"], False),
        (["jm.r", "x.jm.rw"], True),
    ],
)
async def test_scopes_grant_access(
    make_auth: Callable[..., Authenticator], scope: Any, can_write: bool
) -> None:
    """Scopes as a list or a space-separated string, with ':' or '.' prefixes."""
    token = hs256(scope=scope)
    principal = await make_auth(hs256_secret=SECRET).authenticate("GET", bearer(token), {})
    assert principal.can_write is can_write
    expected = frozenset(scope.split() if isinstance(scope, str) else scope)
    assert principal.scopes == expected


@pytest.mark.parametrize(
    "scope",
    [None, [], "", "openid", ["xjm.rw"], "xjm.r", "jm.rwx", "jm.rw.extra", "jm-rw", 7, ["jm"]],
)
async def test_no_job_manager_scope_is_forbidden(
    make_auth: Callable[..., Authenticator], scope: Any
) -> None:
    """Tokens without jm.rw or jm.r (e.g. xjm.rw) are Forbidden, even for reads."""
    token = hs256(scope=scope)
    authenticator = make_auth(hs256_secret=SECRET)
    await refused(authenticator.authenticate("GET", bearer(token), {}), Forbidden, token)


async def test_read_only_token_may_only_read(make_auth: Callable[..., Authenticator]) -> None:
    """jm.r allows GET, HEAD and OPTIONS; POST, PUT, PATCH and DELETE are Forbidden."""
    authenticator = make_auth(hs256_secret=SECRET)
    token = hs256(scope="mdsp:core:jm.r")
    for method in ("GET", "head", "OPTIONS"):
        assert not (await authenticator.authenticate(method, bearer(token), {})).can_write
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        message = await refused(
            authenticator.authenticate(method, bearer(token), {}), Forbidden, token
        )
        assert "jm.rw" in message


# --- credentials and cookies ---------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-jwt"},
    ],
)
async def test_missing_or_malformed_credentials_are_unauthorized(
    make_auth: Callable[..., Authenticator], headers: dict[str, str]
) -> None:
    """No token, a non-bearer scheme or garbage is 401."""
    authenticator = make_auth(hs256_secret=SECRET)
    await refused(authenticator.authenticate("GET", headers, {}), Unauthorized)


async def test_header_names_are_case_insensitive(make_auth: Callable[..., Authenticator]) -> None:
    """A plain dict with lower-case header names works like aiohttp's CIMultiDict."""
    authenticator = make_auth(hs256_secret=SECRET)
    principal = await authenticator.authenticate("GET", {"authorization": f"bearer {hs256()}"}, {})
    assert principal.tenant == TENANT


async def test_authorization_header_wins_over_cookie(
    make_auth: Callable[..., Authenticator],
) -> None:
    """With an Authorization header present, the SESSION cookie is not consulted."""
    authenticator = make_auth(hs256_secret=SECRET)
    headers = {"Authorization": "Bearer garbage"}
    await refused(authenticator.authenticate("GET", headers, {"SESSION": hs256()}), Unauthorized)


async def test_cookie_session_get_needs_no_xsrf(make_auth: Callable[..., Authenticator]) -> None:
    """A SESSION cookie authenticates reads without any XSRF header."""
    authenticator = make_auth(hs256_secret=SECRET)
    principal = await authenticator.authenticate("GET", {}, {"SESSION": hs256()})
    assert principal.via_cookie
    assert principal.can_write


async def test_cookie_session_post_needs_matching_xsrf(
    make_auth: Callable[..., Authenticator],
) -> None:
    """Cookie-authenticated writes need X-XSRF-TOKEN equal to the XSRF-TOKEN cookie."""
    authenticator = make_auth(hs256_secret=SECRET)
    xsrf = new_xsrf_token()
    cookies = {"SESSION": hs256(), "XSRF-TOKEN": xsrf}
    principal = await authenticator.authenticate("POST", {"X-XSRF-TOKEN": xsrf}, cookies)
    assert principal.via_cookie
    for headers, jar in (
        ({}, cookies),
        ({"X-XSRF-TOKEN": new_xsrf_token()}, cookies),
        ({"X-XSRF-TOKEN": ""}, {**cookies, "XSRF-TOKEN": ""}),
        ({"X-XSRF-TOKEN": xsrf}, {"SESSION": cookies["SESSION"]}),
        ({"X-XSRF-TOKEN": "ünïcode"}, cookies),
    ):
        message = await refused(authenticator.authenticate("DELETE", headers, jar), Forbidden)
        assert "X-XSRF-TOKEN" in message


async def test_cookie_session_token_is_still_verified(
    make_auth: Callable[..., Authenticator],
) -> None:
    """A bad SESSION cookie is 401 even with a matching XSRF pair."""
    authenticator = make_auth(hs256_secret=SECRET)
    xsrf = new_xsrf_token()
    bad = hs256(secret="another-secret-that-is-also-32-bytes-long")
    cookies = {"SESSION": bad, "XSRF-TOKEN": xsrf}
    await refused(authenticator.authenticate("POST", {"X-XSRF-TOKEN": xsrf}, cookies), Unauthorized)


async def test_bearer_ignores_xsrf_header(make_auth: Callable[..., Authenticator]) -> None:
    """Bearer requests need no XSRF pair; a stray mismatching header is ignored."""
    authenticator = make_auth(hs256_secret=SECRET)
    headers = {**bearer(hs256()), "X-XSRF-TOKEN": "whatever"}
    principal = await authenticator.authenticate("POST", headers, {"XSRF-TOKEN": "different"})
    assert not principal.via_cookie
    assert (await authenticator.authenticate("POST", bearer(hs256()), {})).can_write


def test_new_xsrf_tokens_are_random() -> None:
    """XSRF tokens are long, URL-safe and fresh each time."""
    tokens = {new_xsrf_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(token) >= 40 and token.isascii() for token in tokens)


# --- redact / mint / close -----------------------------------------------------------------


def test_redact_masks_tokens() -> None:
    """JWTs anywhere and Bearer values are masked; ordinary dotted names are kept."""
    token = hs256()
    plain = unsigned()
    text = (
        f"Authorization: Bearer {token}; cookie SESSION={token}, "
        f"raw {plain} and bearer opaque-value-123 in job.note.json v1.2.3"
    )
    masked = redact(text)
    for part in token.split(".") + plain.split(".")[:2] + ["opaque-value-123"]:
        assert part not in masked
    assert "job.note.json" in masked
    assert "v1.2.3" in masked
    assert "SESSION=[REDACTED-JWT]" in masked
    assert masked.count("[REDACTED") == 4
    assert redact("nothing secret here") == "nothing secret here"


async def test_mint_round_trip(make_auth: Callable[..., Authenticator]) -> None:
    """mint makes HS256 tokens the Authenticator accepts, read-write or read-only."""
    authenticator = make_auth(hs256_secret=SECRET)
    token = mint(SECRET, "tenant-1", user="grace")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 12 * 3600
    assert (claims["sub"], claims["user_name"], claims["scope"]) == ("grace", "grace", ["jm.rw"])
    principal = await authenticator.authenticate("POST", bearer(token), {})
    assert (principal.tenant, principal.user, principal.can_write) == ("tenant-1", "grace", True)
    read_only = mint(SECRET, "tenant-1", read_only=True, lifetime_seconds=60)
    assert (await authenticator.authenticate("GET", bearer(read_only), {})).scopes == {"jm.r"}
    await refused(authenticator.authenticate("POST", bearer(read_only), {}), Forbidden)
    expired = mint(SECRET, "tenant-1", lifetime_seconds=-3600)
    await refused(authenticator.authenticate("GET", bearer(expired), {}), Unauthorized)
    with pytest.raises(ValueError, match="pattern"):
        mint(SECRET, "../escape")


async def test_close_closes_the_client_session(
    jwks: Jwks, rsa_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    """close() is a no-op before any fetch and closes the lazily opened session after one."""
    idle = Authenticator(AuthSettings(jwks_url=jwks.url))
    await idle.close()
    authenticator = Authenticator(AuthSettings(jwks_url=jwks.url))
    await authenticator.authenticate("GET", bearer(rs256(rsa_keys["key-1"])), {})
    session = authenticator._jwks._session  # type: ignore[union-attr]
    assert session is not None
    assert not session.closed
    await authenticator.close()
    assert session.closed
    await authenticator.close()
