"""The verified-token cache: only verified tokens, keyed by their exact text, until they expire."""

import time
from typing import Any

import jwt
import pytest

from adapters.http import auth
from adapters.http.auth import Authenticator, AuthSettings, Forbidden, Unauthorized, mint

SECRET = "a-local-shared-secret-of-at-least-32-bytes"


class CountingAuthenticator(Authenticator):
    """Counts the signature checks, so a test can tell a cache hit from a verification."""

    def __init__(self, settings: AuthSettings) -> None:
        super().__init__(settings)
        self.verifications = 0

    async def _verify(self, token: str) -> tuple[dict[str, Any], str]:
        self.verifications += 1
        return await super()._verify(token)


class WallClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wall_clock(monkeypatch: pytest.MonkeyPatch) -> WallClock:
    """A hand-moved wall clock for the cache's expiry."""
    fake = WallClock()
    monkeypatch.setattr(auth, "_wall_clock", fake)
    return fake


def _token(tenant: str = "tenanta", **claims: Any) -> str:
    now = int(time.time())
    body = {"ten": tenant, "sub": "user", "scope": ["jm.rw"], "iat": now, "exp": now + 3600}
    return jwt.encode({**body, **claims}, SECRET, algorithm="HS256")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_verified_token_is_checked_once_within_the_cache_time(
    wall_clock: WallClock,
) -> None:
    """The same token again is answered from the cache, until verified_cache_seconds pass."""
    authenticator = CountingAuthenticator(
        AuthSettings(hs256_secret=SECRET, verified_cache_seconds=60)
    )
    token = _token()
    for _ in range(3):
        caller = await authenticator.authenticate("POST", _bearer(token), {})
        assert caller.tenant == "tenanta"
    assert authenticator.verifications == 1
    wall_clock.now += 61
    await authenticator.authenticate("POST", _bearer(token), {})
    assert authenticator.verifications == 2


async def test_a_cached_token_is_checked_again_once_it_expires(wall_clock: WallClock) -> None:
    """The cache never outlives the token's exp."""
    authenticator = CountingAuthenticator(
        AuthSettings(hs256_secret=SECRET, verified_cache_seconds=600)
    )
    token = _token(exp=int(wall_clock.now) + 5)
    await authenticator.authenticate("GET", _bearer(token), {})
    wall_clock.now += 6
    await authenticator.authenticate("GET", _bearer(token), {})
    assert authenticator.verifications == 2


async def test_refused_tokens_are_never_cached() -> None:
    """A token that fails verification is checked, and refused, every time."""
    authenticator = CountingAuthenticator(AuthSettings(hs256_secret=SECRET))
    forged = mint("another-secret-of-at-least-32-bytes-long", "tenanta")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await authenticator.authenticate("GET", _bearer(forged), {})
    assert authenticator.verifications == 2
    no_tenant = _token(ten="not a tenant!")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await authenticator.authenticate("GET", _bearer(no_tenant), {})
    assert authenticator.verifications == 4


async def test_each_token_names_its_own_tenant() -> None:
    """Cached tokens of different tenants never answer for each other."""
    authenticator = Authenticator(AuthSettings(hs256_secret=SECRET))
    tokens = {tenant: _token(tenant) for tenant in ("tenanta", "tenantb", "tenantc")}
    for _ in range(2):
        for tenant, token in tokens.items():
            caller = await authenticator.authenticate("GET", _bearer(token), {})
            assert caller.tenant == tenant


async def test_the_cache_is_bounded() -> None:
    """At most verified_cache_entries tokens are kept; the least recently used goes first."""
    authenticator = CountingAuthenticator(
        AuthSettings(hs256_secret=SECRET, verified_cache_entries=2)
    )
    first, second, third = (_token(f"tenant{n}") for n in range(3))
    for token in (first, second, first, third):
        await authenticator.authenticate("GET", _bearer(token), {})
    assert authenticator.verifications == 3
    await authenticator.authenticate("GET", _bearer(first), {})
    assert authenticator.verifications == 3, "first was used recently, so it stayed"
    await authenticator.authenticate("GET", _bearer(second), {})
    assert authenticator.verifications == 4, "second was the least recently used"


async def test_a_cached_token_still_obeys_cookie_and_scope_rules() -> None:
    """Scopes and the XSRF check apply on every request, cached or not."""
    authenticator = Authenticator(AuthSettings(hs256_secret=SECRET))
    token = _token()
    await authenticator.authenticate("POST", _bearer(token), {})
    with pytest.raises(Forbidden):
        await authenticator.authenticate("POST", {}, {"SESSION": token})
    caller = await authenticator.authenticate(
        "POST", {"X-XSRF-TOKEN": "x"}, {"SESSION": token, "XSRF-TOKEN": "x"}
    )
    assert caller.via_cookie
    read_only = _token(scope=["jm.r"])
    await authenticator.authenticate("GET", _bearer(read_only), {})
    with pytest.raises(Forbidden):
        await authenticator.authenticate("POST", _bearer(read_only), {})
