"""Bearer tokens: short-lived, per tenant, signed with the app's secret key.

A token is an itsdangerous ``URLSafeTimedSerializer`` dump of
``{"tenant": ..., "key": <key id> | null}`` with salt ``eventtrack.token``,
signed with ``[*SECRET_KEY_FALLBACKS, SECRET_KEY]`` (the last key signs, every
key verifies, so the secret rotates without logging clients out). The tenant
is inside the signature, so a client cannot point its token at another tenant.

A token minted by exchanging an API key carries that key's id, and is refused
as soon as the key is revoked; a token minted by ``flask eventtrack token``
carries no key and lives until it expires (or the secret key is rotated out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .errors import ConfigurationError, UnauthorizedError
from .stores import Store

__all__ = ["TOKEN_SALT", "TokenClaims", "Tokens", "app_secret_keys"]

TOKEN_SALT = "eventtrack.token"


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
    return [*(app.config.get("SECRET_KEY_FALLBACKS") or ()), secret]


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

    def issue(self, tenant: str, key_id: str | None = None) -> str:
        """A new token for ``tenant``; with ``key_id`` it dies with that key."""
        return str(self.serializer.dumps({"tenant": tenant, "key": key_id}))

    def verify(self, token: str | None) -> TokenClaims:
        """The claims of a valid token.

        :raises UnauthorizedError: missing, expired, tampered, malformed, or
            issued from a key that was revoked since.
        """
        if not token:
            raise UnauthorizedError("A bearer token is required: 'Authorization: Bearer <token>'.")
        try:
            data: Any = self.serializer.loads(token, max_age=self.max_age)
        except SignatureExpired:
            # SignatureExpired is a BadSignature: it must be caught first.
            raise UnauthorizedError(
                f"The token has expired (tokens are valid for {self.max_age} seconds); request a new one."
            ) from None
        except BadSignature:
            raise UnauthorizedError("The token is not valid (bad signature or malformed).") from None
        tenant = data.get("tenant") if isinstance(data, dict) else None
        key_id = data.get("key") if isinstance(data, dict) else None
        if not isinstance(tenant, str) or not tenant or not (key_id is None or isinstance(key_id, str)):
            raise UnauthorizedError("The token is not valid (unexpected content).")
        if key_id is not None and not self._key_active(tenant, key_id):
            raise UnauthorizedError("The API key this token was issued from was revoked.")
        return TokenClaims(tenant, key_id)

    def _key_active(self, tenant: str, key_id: str) -> bool:
        for row in self.store.list_keys(tenant):
            if row["id"] == key_id:
                return not row["revoked_at"]
        return False
