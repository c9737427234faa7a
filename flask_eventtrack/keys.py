"""API keys and tracker keys: issued per tenant, stored hashed, revocable.

A key is ``et_<kind>_<id>_<secret>``; the store keeps only the SHA-256 of the
whole key (keys are 256-bit random, so a plain hash is enough: there is no
dictionary to guess from). Lookups are by hash, and the final comparison is
constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from .errors import UnauthorizedError
from .stores import Store

__all__ = ["KEY_KINDS", "IssuedKey", "check_key", "create_key", "hash_key"]

#: ``api``: server-side integrations (exchange for tokens, profile API);
#: ``tracker``: public keys embedded in web pages (Synerise ``?token=``).
KEY_KINDS = ("api", "tracker")


@dataclass(frozen=True)
class IssuedKey:
    id: str
    tenant: str
    kind: str
    secret: str  # shown once, never stored


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def create_key(store: Store, tenant: str, kind: str = "api", label: str = "") -> IssuedKey:
    """Issue a new key for ``tenant``; the secret is returned once and only its hash is kept."""
    if kind not in KEY_KINDS:
        raise ValueError(f"kind must be one of {KEY_KINDS}, not {kind!r}")
    key_id = secrets.token_hex(6)
    secret = f"et_{kind}_{key_id}_{secrets.token_urlsafe(32)}"
    store.add_key(key_id, tenant, kind, hash_key(secret), label)
    return IssuedKey(key_id, tenant, kind, secret)


def check_key(store: Store, secret: str | None, kinds: tuple[str, ...] = ("api",)) -> str:
    """The tenant of a valid, unrevoked key of one of ``kinds``.

    :raises UnauthorizedError: with a message saying what is wrong.
    """
    if not secret:
        raise UnauthorizedError("An API key is required.")
    digest = hash_key(secret)
    row = store.find_key(digest)
    if row is None or not hmac.compare_digest(row["key_hash"], digest):
        raise UnauthorizedError("The key is not valid.")
    if row["revoked_at"]:
        raise UnauthorizedError("The key was revoked.")
    if row["kind"] not in kinds:
        raise UnauthorizedError(f"A {row['kind']} key cannot be used here; use a {' or '.join(kinds)} key.")
    tenant: str = row["tenant"]
    return tenant
