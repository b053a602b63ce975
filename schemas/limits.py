"""Bounds on untrusted input, in one place so docs, schema and checks agree."""

from typing import Final

MAX_ID_LENGTH: Final = 128
"""event_id, lead_id, anonymous_id: long enough for UUIDs, URNs and CRM ids."""

MAX_TYPE_LENGTH: Final = 64
EVENT_TYPE_PATTERN: Final = r"^[a-z][a-z0-9_.:-]{0,63}$"

MAX_STRING_LENGTH: Final = 4096
"""Any string value inside properties/traits (URLs with long query strings fit)."""

MAX_KEY_LENGTH: Final = 128
MAX_MAP_ITEMS: Final = 256
"""Total number of keys and list items across one properties/traits tree."""

MAX_DEPTH: Final = 5
"""Nesting depth of properties/traits: {"a": {"b": ...}} has depth 2."""

MAX_MESSAGE_BYTES: Final = 256 * 1024
"""A tracker event larger than this is not behaviour, it is a payload dump."""

MAX_FUTURE_SKEW_SECONDS: Final = 24 * 3600
"""Without a record time to clamp to (validating a file), events from further
in the future than this are rejected as clock bugs."""

MIN_EVENT_YEAR: Final = 2000

MAX_DEAD_LETTER_PAYLOAD: Final = 880_000
"""Encoded payload characters kept in a dead letter; a larger one is cut to a
prefix, so a letter stays under the producer's default 1,000,000-byte request
size (payloads up to 660,000 bytes are always kept whole)."""
