"""Tokens with bytes no JWT has are refused as malformed (401), not a server error."""

import pytest

from adapters.http.auth import Authenticator, AuthSettings, Unauthorized

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


@pytest.mark.parametrize(
    "token",
    [
        "\udcff\udcfe",  # undecodable header bytes, as the HTTP server hands them over
        "eyJhbGciOiJIUzI1NiJ9.\u00ff.x",
    ],
)
async def test_non_ascii_tokens_are_unauthorized(token: str) -> None:
    """A bearer token or session cookie with non-ASCII characters is a 401."""
    auth = Authenticator(AuthSettings(hs256_secret=SECRET))
    with pytest.raises(Unauthorized, match="malformed"):
        await auth.authenticate("GET", {"Authorization": f"Bearer {token}"}, {})
    with pytest.raises(Unauthorized, match="malformed"):
        await auth.authenticate("GET", {}, {"SESSION": token})
