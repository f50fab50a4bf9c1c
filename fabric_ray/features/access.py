"""Who may read and push which feature views: bearer tokens with view scopes.

Tokens come from ``serving.tokens`` (:class:`~fabric_ray.config.TokenConfig`: a name, the secret,
and the feature views it covers, ``"*"`` for all). With no token configured, every request is
let through as ``anonymous``; with any, every endpoint but ``/health`` needs
``Authorization: Bearer <secret>``:

- no header, another scheme, or an unknown secret: 401;
- a known token whose scopes do not cover every feature view the request reads or pushes to:
  403, naming the views it lacks.

This is the one place access is decided (the HTTP server and nothing else calls it), so a
fuller policy (per-feature rules, expiry, an external identity provider) can replace
:meth:`Access.authorize` without touching the server.

Secrets are kept only as SHA-256 digests and compared with :func:`hmac.compare_digest`
against every configured token, so the time taken does not tell which token, or how much of
one, matched.

Example:
    >>> from fabric_ray.config import TokenConfig
    >>> access = Access([TokenConfig(name="fraud-svc", secret="s3cret-token", scopes=("user_payments",))])
    >>> access.authorize("Bearer s3cret-token", ["user_payments"])
    'fraud-svc'
    >>> try:
    ...     access.authorize("Bearer s3cret-token", ["merchant_daily"])
    ... except AccessError as exc:
    ...     print(exc.status, exc)
    403 token 'fraud-svc' may not use feature view(s) ['merchant_daily']; its scopes: ['user_payments']
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from fabric_ray.features.wire import RequestError

__all__ = ["ANONYMOUS", "Access", "AccessError"]

ANONYMOUS = "anonymous"
_ALL = "*"


class AccessError(RequestError):
    """A request refused for want of a valid token (401) or of scopes (403)."""


@dataclass(frozen=True)
class _Token:
    name: str
    digest: bytes
    scopes: frozenset[str]


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def _secret_of(token: Any) -> str:
    secret = token["secret"] if isinstance(token, Mapping) else token.secret
    return secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)


class Access:
    """Bearer-token access to feature views.

    Args:
        tokens: :class:`~fabric_ray.config.TokenConfig` objects (or dicts with ``name``,
            ``secret`` and ``scopes``); none means open access.
    """

    def __init__(self, tokens: Sequence[Any] = ()) -> None:
        self._tokens = tuple(
            _Token(
                name=t["name"] if isinstance(t, Mapping) else t.name,
                digest=_digest(_secret_of(t)),
                scopes=frozenset((t.get("scopes", (_ALL,)) if isinstance(t, Mapping) else t.scopes)),
            )
            for t in tokens
        )
        names = [t.name for t in self._tokens]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"serving.tokens: token names must be unique; {dupes} appear more than once")
        by_digest: dict[bytes, str] = {}
        for t in self._tokens:
            if t.digest in by_digest:
                raise ValueError(f"serving.tokens: tokens {by_digest[t.digest]!r} and {t.name!r} have the same secret; give each its own")
            by_digest[t.digest] = t.name

    @property
    def enabled(self) -> bool:
        """Whether any token is configured (and so every protected endpoint needs one)."""
        return bool(self._tokens)

    def authenticate(self, header_value: str | None) -> _Token | None:
        """The token presented in an ``Authorization`` header value (``None`` when access is open).

        Raises:
            AccessError: 401, no bearer token or an unknown one.
        """
        if not self._tokens:
            return None
        if not header_value or not header_value.strip():
            raise AccessError("missing bearer token: send the header 'Authorization: Bearer <token>'", 401)
        scheme, _, secret = header_value.strip().partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AccessError("the Authorization header must be 'Bearer <token>'", 401)
        presented = _digest(secret.strip())
        found = None
        for token in self._tokens:  # no early exit: every request compares against every token
            if hmac.compare_digest(token.digest, presented):
                found = token
        if found is None:
            raise AccessError("invalid bearer token: it matches no token in serving.tokens", 401)
        return found

    def authorize(self, header_value: str | None, views: Iterable[str]) -> str:
        """The principal (token name) allowed to use ``views``, or :data:`ANONYMOUS` with open access.

        Args:
            header_value: the request's ``Authorization`` header (``None`` if absent).
            views: the feature views the request reads or pushes to.

        Raises:
            AccessError: 401 without a valid bearer token; 403 when its scopes lack a view
                (the message names them, never the secret).
        """
        return self.permit(self.authenticate(header_value), views)

    def permit(self, token: _Token | None, views: Iterable[str]) -> str:
        """The principal of an authenticated ``token`` if its scopes cover ``views``.

        The server authenticates first (so that a caller without a token learns nothing about the
        catalog from parse errors), then parses the request, then calls this.

        Raises:
            AccessError: 403, naming the views the token's scopes lack.
        """
        if token is None:
            return ANONYMOUS
        if _ALL not in token.scopes:
            lacking = sorted(set(views) - token.scopes)
            if lacking:
                raise AccessError(
                    f"token {token.name!r} may not use feature view(s) {lacking}; its scopes: {sorted(token.scopes)}",
                    403,
                    "FeastPermissionError",
                )
        return token.name
