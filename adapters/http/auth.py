"""Who is calling: bearer or cookie-session JWTs (HS256 with a shared secret, RS256 via JWKS).

The tenant comes from the ``ten`` claim and the rights from the ``scope`` claim, as in
MindSphere tokens: ``jm.rw`` may do everything, ``jm.r`` may only read. Requests that
authenticate with the ``SESSION`` cookie must also pass the double-submit XSRF check.
"""

import asyncio
import dataclasses
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
import jwt
from jwt.types import Options
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from schemas.jobs import TenantName

log = logging.getLogger(__name__)

_TENANT: TypeAdapter[str] = TypeAdapter(TenantName)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_COOKIE = "SESSION"
XSRF_COOKIE = "XSRF-TOKEN"
XSRF_HEADER = "X-XSRF-TOKEN"
SCOPE_READ_WRITE = "jm.rw"
SCOPE_READ = "jm.r"

# The scope itself, optionally after a prefix that ends in ':' or '.' ("mdsp:core:jm.rw").
_SCOPE = re.compile(r"(?:.*[:.])?(jm\.rw|jm\.r)")
# A JWT (or JWE) as text: base64url segments joined by dots, the first one a JSON object.
_JWT_TEXT = re.compile(r"(?<![A-Za-z0-9_-])ey[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){2,}")
_BEARER_TEXT = re.compile(r"(?i)\b(bearer)\s+[^\s,;\"']+")

# Indirection so tests can move the clock of the JWKS refetch limit without touching asyncio's.
_monotonic = time.monotonic
# Token expiry is wall-clock time; tests move this one for the verified-token cache.
_wall_clock = time.time


class AuthError(Exception):
    """An authentication or authorization failure; the message never contains the token."""

    status: ClassVar[int] = 401


class Unauthorized(AuthError):
    """No usable credentials (HTTP 401)."""

    status: ClassVar[int] = 401


class Forbidden(AuthError):
    """Authenticated, but not allowed to do this (HTTP 403)."""

    status: ClassVar[int] = 403


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    user: str
    scopes: frozenset[str]
    can_write: bool
    via_cookie: bool


class AuthSettings(BaseModel, frozen=True):
    hs256_secret: str | None = Field(default=None, min_length=1)
    jwks_url: str | None = Field(default=None, min_length=1)
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: float = Field(default=30, ge=0)
    jwks_refresh_seconds: float = Field(default=30, ge=0)
    jwks_timeout_seconds: float = Field(default=5, gt=0)
    # Verified tokens are remembered (clients send the same one with every request) until they
    # expire, and at most this long, so a JWKS key withdrawn is honoured within that time.
    verified_cache_seconds: float = Field(default=60, ge=0)
    verified_cache_entries: int = Field(default=10_000, ge=0)


def new_xsrf_token() -> str:
    """A fresh random value for the ``XSRF-TOKEN`` cookie of a new session."""
    return secrets.token_urlsafe(32)


def redact(text: str) -> str:
    """Mask JWTs and ``Bearer …`` values in text meant for logs."""
    text = _BEARER_TEXT.sub(r"\1 [REDACTED]", text)
    return _JWT_TEXT.sub("[REDACTED-JWT]", text)


def mint(
    secret: str,
    tenant: str,
    *,
    read_only: bool = False,
    user: str = "local-user",
    lifetime_seconds: int = 12 * 3600,
) -> str:
    """An HS256 token for local use, shaped like a MindSphere user token."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "ten": _TENANT.validate_python(tenant),
        "sub": user,
        "user_name": user,
        "scope": [SCOPE_READ if read_only else SCOPE_READ_WRITE],
        "iat": now,
        "exp": now + lifetime_seconds,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


class _JwksKeys:
    """RS256 public keys by ``kid``, refetched on an unknown kid at most once per interval."""

    def __init__(self, url: str, refresh_seconds: float, timeout_seconds: float) -> None:
        self._url = url
        self._refresh_seconds = refresh_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._keys: dict[str, Any] = {}
        # Counts key-set changes, so tokens verified against an older set are checked again.
        self.generation = 0
        self._last_fetch: float | None = None
        self._last_error: str | None = None
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def key(self, kid: str) -> Any:
        """The key for ``kid``; raises Unauthorized when there is none (or none can be had)."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        async with self._lock:
            key = self._keys.get(kid)  # another request may just have fetched it
            if key is None and self._may_fetch():
                await self._refresh()
                key = self._keys.get(kid)
        if key is not None:
            return key
        if self._last_error is not None:
            raise Unauthorized(f"signing keys are unavailable ({self._last_error})")
        raise Unauthorized("token is signed with an unknown key ('kid')")

    def _may_fetch(self) -> bool:
        return self._last_fetch is None or _monotonic() - self._last_fetch >= self._refresh_seconds

    async def _refresh(self) -> None:
        previous, self._last_fetch = self._last_fetch, _monotonic()
        # Failures count too, so a down endpoint isn't hammered.
        try:
            document = await self._download()
            keys = _rs256_keys(document)
            if keys.keys() != self._keys.keys():
                self.generation += 1
            self._keys = keys
        except asyncio.CancelledError:
            self._last_fetch = previous  # the fetch never finished: let the next request retry
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            self._last_error = _describe(error)
            log.warning("could not fetch JWKS from %s: %s", self._url, self._last_error)
        else:
            self._last_error = None

    async def _download(self) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.get(self._url) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _describe(error: Exception) -> str:
    if isinstance(error, TimeoutError):
        return "JWKS request timed out"
    if isinstance(error, aiohttp.ClientResponseError):
        return f"JWKS endpoint answered HTTP {error.status}"
    if isinstance(error, aiohttp.ClientError | OSError):
        return "JWKS endpoint unreachable"
    return f"JWKS document is not usable: {error}"


def _rs256_keys(document: Any) -> dict[str, Any]:
    """The usable RS256 signing keys of a JWKS document, by kid."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("expected an object with a 'keys' list")
    keys: dict[str, Any] = {}
    for entry in document["keys"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("kid"), str) and entry["kid"]):
            continue
        if entry.get("kty") != "RSA" or entry.get("alg", "RS256") != "RS256":
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry, algorithm="RS256").key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
    return keys


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively even when ``headers`` is a plain dict."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def _scopes(claim: Any) -> frozenset[str]:
    if isinstance(claim, str):
        return frozenset(claim.split())
    if isinstance(claim, list):
        return frozenset(scope for scope in claim if isinstance(scope, str) and scope)
    return frozenset()


def _job_manager_scopes(scopes: frozenset[str]) -> set[str]:
    """{'jm.rw', 'jm.r'} ∩ the scopes with any ':'/'.'-terminated prefix removed."""
    found = set()
    for scope in scopes:
        match = _SCOPE.fullmatch(scope)
        if match is not None:
            found.add(match.group(1))
    return found


def _invalid(error: jwt.PyJWTError) -> Unauthorized:
    """Our own wording: PyJWT's messages may quote parts of the token."""
    if isinstance(error, jwt.ExpiredSignatureError):
        return Unauthorized("token has expired")
    if isinstance(error, jwt.ImmatureSignatureError):
        return Unauthorized("token is not valid yet (nbf/iat in the future)")
    if isinstance(error, jwt.MissingRequiredClaimError):
        return Unauthorized(f"token lacks the required '{error.claim}' claim")
    if isinstance(error, jwt.InvalidIssuerError):
        return Unauthorized("token issuer ('iss') is not accepted")
    if isinstance(error, jwt.InvalidAudienceError):
        return Unauthorized("token audience ('aud') is not accepted")
    if isinstance(error, jwt.InvalidSignatureError):
        return Unauthorized("token signature is not valid")
    if isinstance(error, jwt.DecodeError):
        return Unauthorized("token is malformed")
    return Unauthorized("token is not valid")


class Authenticator:
    """Turns a request's method, headers and cookies into a Principal, or refuses it."""

    def __init__(self, settings: AuthSettings) -> None:
        if settings.hs256_secret is None and settings.jwks_url is None:
            raise ValueError("configure hs256_secret, jwks_url or both")
        self._settings = settings
        # Exact token text -> (until when, JWKS key-set generation or -1 for HS256, the caller
        # it names with via_cookie False). Only tokens that verified are added; a bounded LRU.
        self._verified: OrderedDict[str, tuple[float, int, Principal]] = OrderedDict()
        self._jwks = (
            _JwksKeys(
                settings.jwks_url, settings.jwks_refresh_seconds, settings.jwks_timeout_seconds
            )
            if settings.jwks_url is not None
            else None
        )

    async def authenticate(
        self, method: str, headers: Mapping[str, str], cookies: Mapping[str, str]
    ) -> Principal:
        """Raises Unauthorized (401) or Forbidden (403)."""
        writes = method.upper() not in READ_METHODS
        authorization = _header(headers, "Authorization")
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise Unauthorized("Authorization header must be 'Bearer <token>'")
            via_cookie = False
        else:
            token = cookies.get(SESSION_COOKIE, "").strip()
            if not token:
                raise Unauthorized(
                    f"missing credentials (an Authorization bearer token "
                    f"or a {SESSION_COOKIE} cookie)"
                )
            via_cookie = True
        # A JWT is base64url and dots; other bytes (undecodable ones arrive as surrogates)
        # would make PyJWT raise outside its own error types.
        if not token.isascii():
            raise Unauthorized("token is malformed")

        principal = await self._verified_principal(token)
        if via_cookie:
            principal = dataclasses.replace(principal, via_cookie=True)
        if not _job_manager_scopes(principal.scopes):
            raise Forbidden(f"token grants neither '{SCOPE_READ_WRITE}' nor '{SCOPE_READ}'")
        if writes and not principal.can_write:
            raise Forbidden(
                f"'{SCOPE_READ}' allows only reads; {method.upper()} needs '{SCOPE_READ_WRITE}'"
            )
        if writes and via_cookie:
            self._check_xsrf(headers, cookies)
        return principal

    async def close(self) -> None:
        if self._jwks is not None:
            await self._jwks.close()

    async def _verified_principal(self, token: str) -> Principal:
        """The caller a token names; PyJWT's decode (two base64 and JSON parses and the
        signature check) was a fifth of the gateway's CPU per request, so a verified token is
        remembered until its ``exp`` (at most ``verified_cache_seconds``) or until the JWKS key
        set changes."""
        moment = _wall_clock()
        generation = -1 if self._jwks is None else self._jwks.generation
        cached = self._verified.get(token)
        if cached is not None:
            until, verified_with, principal = cached
            if until > moment and verified_with in (-1, generation):
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        claims, algorithm = await self._verify(token)
        principal = self._principal(claims, via_cookie=False)
        limit = self._settings.verified_cache_entries
        if limit and self._settings.verified_cache_seconds:
            expires = claims.get("exp")
            until = moment + self._settings.verified_cache_seconds
            if isinstance(expires, int | float):
                until = min(until, float(expires))
            kind = -1 if self._jwks is None or algorithm == "HS256" else self._jwks.generation
            self._verified[token] = (until, kind, principal)
            while len(self._verified) > limit:
                self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[dict[str, Any], str]:
        """The verified claims and the algorithm that checked them."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("token is malformed") from None
        algorithm = header.get("alg")
        key: Any
        if algorithm == "HS256":
            if self._settings.hs256_secret is None:
                raise Unauthorized("HS256 tokens are not accepted here (no shared secret)")
            key = self._settings.hs256_secret
        elif algorithm == "RS256":
            if self._jwks is None:
                raise Unauthorized("RS256 tokens are not accepted here (no JWKS URL)")
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise Unauthorized("RS256 token has no 'kid' header")
            key = await self._jwks.key(kid)
        else:
            raise Unauthorized("token algorithm is not accepted (only HS256 and RS256)")

        options: Options = {
            "require": ["exp"],
            "verify_aud": self._settings.audience is not None,
        }
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                options=options,
                leeway=self._settings.leeway_seconds,
                issuer=self._settings.issuer,
                audience=self._settings.audience,
            )
        except jwt.PyJWTError as error:
            raise _invalid(error) from None
        return claims, algorithm

    @staticmethod
    def _principal(claims: dict[str, Any], via_cookie: bool) -> Principal:
        try:
            tenant = _TENANT.validate_python(claims.get("ten"))
        except ValidationError:
            raise Unauthorized("token has no valid 'ten' (tenant) claim") from None
        user = claims.get("user_name")
        if not isinstance(user, str) or not user:
            user = claims.get("sub")
        if not isinstance(user, str) or not user:
            raise Unauthorized("token names no user ('user_name' or 'sub')")
        scopes = _scopes(claims.get("scope"))
        return Principal(
            tenant=tenant,
            user=user,
            scopes=scopes,
            can_write=SCOPE_READ_WRITE in _job_manager_scopes(scopes),
            via_cookie=via_cookie,
        )

    @staticmethod
    def _check_xsrf(headers: Mapping[str, str], cookies: Mapping[str, str]) -> None:
        sent = (_header(headers, XSRF_HEADER) or "").encode()
        expected = cookies.get(XSRF_COOKIE, "").encode()
        if not expected or not hmac.compare_digest(sent, expected):
            raise Forbidden(
                f"cookie sessions must send the {XSRF_HEADER} header, equal to the "
                f"{XSRF_COOKIE} cookie, on every request but GET, HEAD and OPTIONS"
            )
