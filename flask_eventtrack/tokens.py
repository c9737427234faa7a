"""Bearer tokens: short-lived, per tenant, signed with the app's secret key.

A token is an itsdangerous ``URLSafeTimedSerializer`` dump of
``{"tenant": ..., "key": <key id> | null}`` with salt ``eventtrack.token``,
signed with ``[*SECRET_KEY_FALLBACKS, SECRET_KEY]`` (the last key signs, every
key verifies, so the secret rotates without logging clients out). The tenant
is inside the signature, so a client cannot point its token at another tenant.

A token minted by exchanging an API key carries that key's id, and is refused
as soon as the key is revoked; a token minted by ``flask eventtrack token``
carries no key and lives until it expires (or the secret key is rotated out).

Verifying a signature costs more than the rest of a small request, so a
verified token's claims and signing time are kept per worker (:data:`CACHE_SIZE`
tokens at most). The cache changes nothing a client can observe: expiry is
recomputed on every request from the signing time with itsdangerous' own clock
and rule, and revocation is looked up in the store on every request
(``Store.get_key``, one indexed row), so a revoked key's tokens fail at once
in every worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from .errors import ConfigurationError, UnauthorizedError
from .signing import key_list
from .stores import Store

__all__ = ["CACHE_SIZE", "TOKEN_SALT", "TokenClaims", "Tokens", "app_secret_keys"]

TOKEN_SALT = "eventtrack.token"
#: Verified tokens remembered per :class:`Tokens` (i.e. per app and worker).
CACHE_SIZE = 4096


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says: the tenant it writes to, and the key it came from."""

    tenant: str
    key_id: str | None


def app_secret_keys(app: Flask) -> list[str | bytes]:
    """``[*SECRET_KEY_FALLBACKS, SECRET_KEY]``: itsdangerous signs with the last one.

    :raises ConfigurationError: when the app has no ``SECRET_KEY``.
    """
    secret = app.config.get("SECRET_KEY")
    if not secret:
        raise ConfigurationError("Bearer tokens are signed with SECRET_KEY: set it on the app.")
    return [*key_list(app.config.get("SECRET_KEY_FALLBACKS"), "SECRET_KEY_FALLBACKS"), secret]


class Tokens:
    """Issues and verifies the bearer tokens of one app.

    :param keys: signing keys, current key last.
    :param max_age: seconds a token stays valid.
    :param store: where key revocations are checked.
    """

    def __init__(self, keys: Sequence[str | bytes], max_age: int, store: Store) -> None:
        if max_age <= 0:
            raise ConfigurationError(
                f"The token max age must be a positive number of seconds, not {max_age}."
            )
        secrets = [k.encode() if isinstance(k, str) else k for k in keys]
        self.serializer = URLSafeTimedSerializer(secrets, salt=TOKEN_SALT)
        self.max_age = max_age
        self.store = store
        # The clock itsdangerous checks ages with (``TimestampSigner.get_timestamp``).
        self._clock = TimestampSigner(secrets, salt=TOKEN_SALT)
        #: token -> (signed at, claims), only for tokens whose signature and content held
        self._verified: dict[str, tuple[int, TokenClaims]] = {}

    def issue(self, tenant: str, key_id: str | None = None) -> str:
        """A new token for ``tenant``; with ``key_id`` it dies with that key."""
        if not tenant.strip():
            raise ValueError("A token needs a tenant; verify() refuses an empty one.")
        return str(self.serializer.dumps({"tenant": tenant, "key": key_id}))

    def verify(self, token: str | None) -> TokenClaims:
        """The claims of a valid token.

        :raises UnauthorizedError: missing, expired, tampered, malformed, or
            issued from a key that was revoked since.
        """
        if not token:
            raise UnauthorizedError("A bearer token is required: 'Authorization: Bearer <token>'.")
        cached = self._verified.get(token)
        if cached is None:
            claims = self._check_signature(token)
        else:
            signed_at, claims = cached
            # itsdangerous' own rule (TimestampSigner.unsign), on its own clock.
            age = self._clock.get_timestamp() - signed_at
            if age > self.max_age or age < 0:
                self._verified.pop(token, None)
                raise self._expired()
        if claims.key_id is not None and not self._key_active(claims.tenant, claims.key_id):
            raise UnauthorizedError("The API key this token was issued from was revoked.")
        return claims

    def _check_signature(self, token: str) -> TokenClaims:
        """Full verification (signature, age, content); remembers a token that passes."""
        try:
            data: Any
            data, signed = self.serializer.loads(token, max_age=self.max_age, return_timestamp=True)
        except SignatureExpired:
            # SignatureExpired is a BadSignature: it must be caught first.
            raise self._expired() from None
        except BadSignature:
            raise UnauthorizedError("The token is not valid (bad signature or malformed).") from None
        tenant = data.get("tenant") if isinstance(data, dict) else None
        key_id = data.get("key") if isinstance(data, dict) else None
        if not isinstance(tenant, str) or not tenant or not (key_id is None or isinstance(key_id, str)):
            raise UnauthorizedError("The token is not valid (unexpected content).")
        signed_at, claims = int(signed.timestamp()), TokenClaims(tenant, key_id)
        if len(self._verified) >= CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (signed_at, claims)
        return claims

    def _expired(self) -> UnauthorizedError:
        return UnauthorizedError(
            f"The token has expired (tokens are valid for {self.max_age} seconds); request a new one."
        )

    def _key_active(self, tenant: str, key_id: str) -> bool:
        """One indexed row (``Store.get_key``), never a scan: checked on every request."""
        row = self.store.get_key(key_id)
        return row is not None and row["tenant"] == tenant and not row["revoked_at"]
