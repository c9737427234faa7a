"""Keyed hashing of user ids, and payload signatures, built on itsdangerous.

Body signatures (Cortex): the ``X-Signature`` header carries
``<timestamp>.<signature>``, where the signature is itsdangerous's
HMAC-SHA256 over ``body + "." + timestamp`` with salt ``eventtrack.cortex``.
Several keys may be active (the last one signs, all verify), and a maximum age
may be enforced. :func:`sign_body` is the client helper that produces it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from functools import lru_cache

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner

__all__ = ["SIGNATURE_HEADER", "SignatureFailure", "make_user_hasher", "sign_body", "verify_body"]

SIGNATURE_HEADER = "X-Signature"
BODY_SALT = "eventtrack.cortex"
# "<timestamp>.<signature>", both unpadded base64url: exactly one dot, so the
# header cannot move the boundary between the body and what signs it.
_HEADER_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,32}\.[A-Za-z0-9_-]{1,128}")


class SignatureFailure(Exception):
    """The body's signature is missing, malformed, wrong or too old."""


def make_user_hasher(key: str | bytes) -> Callable[[str], str]:
    """Return ``hash(user_id) -> 32 hex chars``: HMAC-SHA256 keyed with ``key``.

    Stable for one key, irreversible, and useless for dictionary guessing
    without the key. Case-sensitive, like the vendors' user ids.
    """
    secret = hashlib.sha256(b"eventtrack.user-id:" + (key.encode() if isinstance(key, str) else key)).digest()

    @lru_cache(maxsize=65536)  # the same users come back request after request
    def hash_user(user_id: str) -> str:
        # surrogatepass: any str hashes (valid UTF-8 text hashes exactly as UTF-8)
        return hmac.new(secret, user_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]

    return hash_user


def _signer(keys: Sequence[str | bytes]) -> TimestampSigner:
    secrets = [key.encode() if isinstance(key, str) else key for key in keys]
    return TimestampSigner(secrets, salt=BODY_SALT, digest_method=hashlib.sha256)


def sign_body(body: bytes, key: str | bytes) -> str:
    """The ``X-Signature`` header value for ``body`` (client helper)."""
    signed = _signer([key]).sign(body)
    return signed[len(body) + 1 :].decode("ascii")


def verify_body(
    body: bytes, signature: str | None, keys: Sequence[str | bytes], max_age: int | None = None
) -> None:
    """Check a body signature in constant time against every active key.

    :raises SignatureFailure: with a message that says what was wrong.
    """
    if not signature:
        raise SignatureFailure(f"missing {SIGNATURE_HEADER} header")
    if not keys:
        raise SignatureFailure("no signing key is configured on the server")
    if not _HEADER_SHAPE.fullmatch(signature):
        raise SignatureFailure(f"malformed {SIGNATURE_HEADER} header: expected <timestamp>.<signature>")
    try:
        value = _signer(keys).unsign(body + b"." + signature.encode("ascii"), max_age=max_age)
    except SignatureExpired as exc:
        raise SignatureFailure(f"signature expired: {exc}") from exc
    except BadSignature as exc:
        raise SignatureFailure("signature does not match the body") from exc
    if value != body:  # cannot happen with one dot in the header; checked all the same
        raise SignatureFailure("signature does not match the body")
