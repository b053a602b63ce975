"""Write keys: which source a request comes from, and what that source may send."""

from __future__ import annotations

import base64
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass


def new_write_key() -> str:
    """A fresh write key (32 URL-safe random characters after ``wk_``)."""
    return "wk_" + secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class Source:
    """A named sender; only `sales` sources may send the sales-only event types."""

    name: str
    sales: bool = False


class WriteKeys:
    """Looks a presented key up in constant time: every known key is compared, always."""

    def __init__(
        self, keys: Mapping[str, str], sales_sources: frozenset[str] = frozenset()
    ) -> None:
        self._keys = [
            (key.encode(), Source(name, sales=name in sales_sources)) for key, name in keys.items()
        ]

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def sources(self) -> list[Source]:
        return [source for _, source in self._keys]

    def source_of(self, presented: str | None) -> Source | None:
        if presented is None:
            return None
        # any str encodes: lone surrogates from JSON escapes (or escaped header bytes)
        # pass as bytes no configured key has, rather than raising
        candidate = presented.encode("utf-8", "surrogatepass")
        found: Source | None = None
        for key, source in self._keys:
            if hmac.compare_digest(key, candidate):
                found = source
        return found


def basic_username(header: str | None) -> str | None:
    """The user name of an ``Authorization: Basic`` header (the write key), else None."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII characters in the header
        return None
    username, _, _password = decoded.partition(":")
    return username or None
