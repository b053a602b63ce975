"""Standard Webhooks signing (https://www.standardwebhooks.com/), pure.

The signed content is ``<webhook-id>.<webhook-timestamp>.<body>``; the
signature is the base64 HMAC-SHA256 of it under the secret's key, sent as
``v1,<signature>``. Several secrets (a key rotation) give several
space-separated signatures, and a receiver accepts the message if any of
them verifies. Secrets are ``whsec_`` + base64 of the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 -- the prefix, not a secret
MIN_KEY_BYTES = 16
"""Shortest key accepted (Standard Webhooks suggests 24 to 64 bytes)."""


class SecretError(ValueError):
    """A secret that is not ``whsec_`` + base64 of at least `MIN_KEY_BYTES` bytes."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_...`` secret; SecretError (never showing it) if malformed."""
    if not secret.startswith(SECRET_PREFIX):
        raise SecretError(f"a secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(f"a secret must be {SECRET_PREFIX!r} + base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise SecretError(f"a secret's key must be at least {MIN_KEY_BYTES} bytes")
    return key


def new_secret(size: int = 32) -> str:
    """A fresh random secret, ``whsec_`` + base64 of `size` bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(size)).decode()


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of id.timestamp.body>`` under one key."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign_headers(
    keys: Sequence[bytes], webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (one signature per key)."""
    if not keys:
        raise ValueError("signing needs at least one key")
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(k, webhook_id, timestamp, body) for k in keys),
    }
