"""Bearer-token auth with scopes (read, plan, apply, approve).

With no tokens configured, auth is off and every request acts as ``anonymous`` with all scopes.
Pipelines report heartbeats with a per-pipeline report token minted at apply time.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from fastapi import HTTPException, Request

from cdp_ray.control.settings import ALL_SCOPES, TokenSpec


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]


ANONYMOUS = Principal("anonymous", frozenset(ALL_SCOPES))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Authenticator:
    """Maps ``Authorization: Bearer <token>`` to a principal."""

    def __init__(self, tokens: list[TokenSpec]):
        self.enabled = bool(tokens)
        self._by_digest: dict[str, Principal] = {}
        for spec in tokens:
            digest = spec.sha256.lower() if spec.sha256 else _digest(spec.token or "")
            if not spec.sha256 and not spec.token:
                raise ValueError(f"token {spec.name!r} has neither `token` nor `sha256`")
            self._by_digest[digest] = Principal(spec.name, frozenset(spec.scopes))

    def principal(self, request: Request) -> Principal | None:
        if not self.enabled:
            return ANONYMOUS
        token = bearer(request)
        if token is None:
            return None
        digest = _digest(token)
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None

    def require(self, request: Request, scope: str) -> Principal:
        """The caller, who must hold ``scope``; 401 without a valid token, 403 without the scope."""
        p = self.principal(request)
        if p is None:
            raise HTTPException(
                401,
                detail={"error": "Unauthorized", "message": "missing or unknown bearer token",
                        "hint": "send `Authorization: Bearer <token>`"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        if scope not in p.scopes:
            raise HTTPException(
                403,
                detail={"error": "Forbidden", "message": f"{p.name!r} lacks the {scope!r} scope",
                        "hint": f"use a token granted the {scope!r} scope"},
            )
        return p


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def verify_signature(secret: str, body: bytes, signature: str | None) -> bool:
    """``X-CDP-Signature: sha256=<hex hmac of the body>`` for incoming approval webhooks."""
    if not signature or not signature.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.removeprefix("sha256="))


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
