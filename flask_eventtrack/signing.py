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
from typing import Any

from itsdangerous import BadSignature, TimestampSigner
from itsdangerous.encoding import base64_decode, bytes_to_int

from .errors import ConfigurationError

__all__ = [
    "SIGNATURE_HEADER",
    "SignatureFailure",
    "key_list",
    "make_user_hasher",
    "sign_body",
    "verify_body",
]

SIGNATURE_HEADER = "X-Signature"
BODY_SALT = "eventtrack.cortex"
# "<timestamp>.<signature>", both unpadded base64url: exactly one dot, so the
# header cannot move the boundary between the body and what signs it.
_HEADER_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,32}\.[A-Za-z0-9_-]{1,128}")


class SignatureFailure(Exception):
    """The body's signature is missing, malformed, wrong or too old."""


def key_list(value: Any, setting: str) -> list[str | bytes]:
    """The signing keys of a setting that may hold one key or a list of keys.

    One string is one key, never a list of one-character keys: Flask's
    ``from_prefixed_env`` leaves ``FLASK_SECRET_KEY_FALLBACKS=<old key>`` a
    string, and each character verifying a signature would let anyone forge
    one. An empty key in a list verifies what anyone can sign, so it is refused.

    :raises ConfigurationError: naming the setting.
    """
    if isinstance(value, (str, bytes)):
        return [value] if value else []  # an empty setting is no key, as for numbers
    if value is not None and not isinstance(value, (list, tuple)):
        raise ConfigurationError(f"{setting} must be a key or a list of keys, not {type(value).__name__}.")
    keys = list(value or ())
    for key in keys:
        if not isinstance(key, (str, bytes)) or not key:
            raise ConfigurationError(f"{setting} holds an empty or non-text key ({type(key).__name__}).")
    return keys


#: Ids hashed are remembered, up to this many: the same users come back request
#: after request, and a batch repeats its few users. A miss costs ~1 us.
HASH_CACHE_SIZE = 4096
#: Longer ids are hashed every time, never remembered, so the cache stays under
#: ~1.5 MB per process whatever clients send (a refused body's ids are hashed
#: too, and may be as long as the body).
HASH_CACHE_MAX_ID_LENGTH = 128


def make_user_hasher(key: str | bytes) -> Callable[[str], str]:
    """Return ``hash(user_id) -> 32 hex chars``: HMAC-SHA256 keyed with ``key``.

    Stable for one key, irreversible, and useless for dictionary guessing
    without the key. Case-sensitive, like the vendors' user ids.
    """
    secret = hashlib.sha256(b"eventtrack.user-id:" + (key.encode() if isinstance(key, str) else key)).digest()
    keyed = hmac.new(secret, digestmod=hashlib.sha256)  # copied per id: a third cheaper than hmac.new

    def digest(user_id: str) -> str:
        mac = keyed.copy()
        # surrogatepass: any str hashes (valid UTF-8 text hashes exactly as UTF-8)
        mac.update(user_id.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()[:32]

    remembered = lru_cache(maxsize=HASH_CACHE_SIZE)(digest)

    def hash_user(user_id: str) -> str:
        return remembered(user_id) if len(user_id) <= HASH_CACHE_MAX_ID_LENGTH else digest(user_id)

    return hash_user


def _signer(keys: Sequence[str | bytes]) -> TimestampSigner:
    secrets = [key.encode() if isinstance(key, str) else key for key in keys]
    return TimestampSigner(secrets, salt=BODY_SALT, digest_method=hashlib.sha256)


def sign_body(body: bytes, key: str | bytes) -> str:
    """The ``X-Signature`` header value for ``body`` (client helper)."""
    signed = _signer([key]).sign(body)
    return signed[len(body) + 1 :].decode("ascii")


def verify_body(
    body: bytes,
    signature: str | None,
    keys: Sequence[str | bytes],
    max_age: int | None = None,
    clock_skew: int = 0,
) -> None:
    """Check a body signature in constant time against every active key.

    With ``max_age``, a signature older than that many seconds has expired, and
    one dated more than ``clock_skew`` seconds ahead of our clock is refused
    (a client's clock may run a little fast; one far ahead would make a
    signature that never expires).

    :raises SignatureFailure: with a message that says what was wrong.
    """
    if not signature:
        raise SignatureFailure(f"missing {SIGNATURE_HEADER} header")
    if not keys:
        raise SignatureFailure("no signing key is configured on the server")
    if not _HEADER_SHAPE.fullmatch(signature):
        raise SignatureFailure(f"malformed {SIGNATURE_HEADER} header: expected <timestamp>.<signature>")
    signer = _signer(keys)
    try:
        # No max_age here: itsdangerous turns the timestamp into a datetime to
        # report an expiry, which fails for one past year 9999 (a 500).
        value = signer.unsign(body + b"." + signature.encode("ascii"))
    except BadSignature as exc:
        raise SignatureFailure("signature does not match the body") from exc
    if value != body:  # cannot happen with one dot in the header; checked all the same
        raise SignatureFailure("signature does not match the body")
    if max_age is not None:
        age = signer.get_timestamp() - bytes_to_int(base64_decode(signature.partition(".")[0]))
        if age > max_age:
            raise SignatureFailure(f"signature expired: it is {age} seconds old; the limit is {max_age}")
        if age < -clock_skew:
            raise SignatureFailure(
                f"signature is dated {-age} seconds ahead of the server's clock"
                f" (more than the allowed {clock_skew})"
            )
