"""Bearer JWTs (HS256): the tenant comes from the ``ten`` claim, as in MindSphere tokens."""

import time

import jwt
from pydantic import TypeAdapter, ValidationError

from schemas.jobs import TenantName

_TENANT: TypeAdapter[str] = TypeAdapter(TenantName)


class Unauthorized(Exception):
    """No usable token; the message says why without echoing the token."""


class JwtAuthenticator:
    def __init__(self, secret: str) -> None:
        self._secret = secret

    def tenant(self, authorization: str | None) -> str:
        if not authorization:
            raise Unauthorized("missing Authorization header (expected 'Bearer <token>')")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("Authorization header must be 'Bearer <token>'")
        try:
            claims = jwt.decode(token.strip(), self._secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token has expired") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("token is not valid") from None
        try:
            return _TENANT.validate_python(claims.get("ten"))
        except ValidationError:
            raise Unauthorized("token has no valid 'ten' (tenant) claim") from None

    def mint(
        self, tenant: str, subject: str = "local-user", lifetime_seconds: int = 12 * 3600
    ) -> str:
        now = int(time.time())
        claims = {"ten": _TENANT.validate_python(tenant), "sub": subject, "iat": now}
        claims["exp"] = now + lifetime_seconds
        return jwt.encode(claims, self._secret, algorithm="HS256")
