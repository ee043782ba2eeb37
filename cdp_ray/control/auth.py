"""Bearer-token auth with scopes (read, plan, apply, approve), and signed webhooks.

Routes declare what they need with ``Security(authenticator.dependency, scopes=[...])`` over FastAPI's
``HTTPBearer``, so the OpenAPI document shows the bearer scheme and each route's scope. With no tokens
configured, auth is off and every request acts as ``anonymous`` with all scopes. Pipelines report
heartbeats, and fetch the credentials their run needs, with a per-pipeline report token minted at apply.

Webhooks (both directions) carry ``X-CDP-Timestamp: <unix seconds>`` and ``X-CDP-Signature:
sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cdp_ray.control.settings import ALL_SCOPES, TokenSpec

bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearer",
    description="`Authorization: Bearer <token>`; a token grants some of the scopes read, plan, apply, approve "
    "(each route lists the one it needs)",
)


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]


ANONYMOUS = Principal("anonymous", frozenset(ALL_SCOPES))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_of(creds: HTTPAuthorizationCredentials | None) -> str | None:
    return creds.credentials.strip() or None if creds else None


class Authenticator:
    """Maps a bearer token to a principal."""

    def __init__(self, tokens: list[TokenSpec]):
        self.enabled = bool(tokens)
        self._by_digest: dict[str, Principal] = {}
        for spec in tokens:
            if not spec.sha256 and not spec.token:
                raise ValueError(f"token {spec.name!r} has neither `token` nor `sha256`")
            self._by_digest[spec.sha256.lower() if spec.sha256 else digest(spec.token or "")] = Principal(
                spec.name, frozenset(spec.scopes))

    def principal(self, token: str | None) -> Principal | None:
        if not self.enabled:
            return ANONYMOUS
        if token is None:
            return None
        d = digest(token)
        return next((p for known, p in self._by_digest.items() if hmac.compare_digest(known, d)), None)

    def require(self, token: str | None, scopes: list[str]) -> Principal:
        """The caller, who must hold every scope; 401 without a valid token, 403 without a scope."""
        p = self.principal(token)
        if p is None:
            raise unauthorized("missing or unknown bearer token")
        missing = [s for s in scopes if s not in p.scopes]
        if missing:
            raise HTTPException(403, detail={"error": "Forbidden", "message": f"{p.name!r} lacks the {missing[0]!r} scope",
                                             "hint": f"use a token granted the {missing[0]!r} scope"})
        return p


def unauthorized(message: str, hint: str = "send `Authorization: Bearer <token>`") -> HTTPException:
    return HTTPException(401, detail={"error": "Unauthorized", "message": message, "hint": hint},
                         headers={"WWW-Authenticate": "Bearer"})


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers that sign ``body`` at ``timestamp`` (now by default)."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-CDP-Timestamp": str(ts), "X-CDP-Signature": f"sha256={mac}"}


def check_signature(secret: str, body: bytes, timestamp: str | None, signature: str | None, tolerance: int) -> str | None:
    """Why a signed request is refused (``None``: it is authentic and fresh)."""
    if not timestamp or not timestamp.isdigit():
        return "X-CDP-Timestamp is missing: sign the timestamp with the body"
    if not signature or not signature.startswith("sha256="):
        return "X-CDP-Signature is missing"
    expected = sign(secret, body, int(timestamp))["X-CDP-Signature"]
    if not hmac.compare_digest(expected, signature):
        return "X-CDP-Signature does not match the timestamp and body"
    if abs(time.time() - int(timestamp)) > tolerance:
        return f"the timestamp is more than {tolerance}s away from the control plane's clock"
    return None
