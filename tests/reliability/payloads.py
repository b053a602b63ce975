"""Seeded generators of malformed tracker payloads, and of awkward but valid ones.

Every bad payload breaks the documented contract of `BehaviorEvent` (README,
"Topics and messages"; schemas/limits.py) in one named way, so a payload the
codec accepts is a bug in the codec, not in the generator. Valid payloads sit
right at the limits (128-character ids, 64-character types, 256 items, depth
5, 4096-character strings, times 23 h ahead) to show the bounds are not
over-strict.

Plain `random.Random(seed)`: reproducible, fast, and every category is hit
with a known frequency, which a property-based search would not guarantee.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from leadpulse.schemas import limits

MAX_OVERSIZED_BYTES = 600 * 1024
"""Oversized payloads stay below ~600 KiB so that the campaign can match each
dead letter to its exact bytes: letters keep payloads up to 660,000 bytes whole and
cut larger ones to a prefix (see test_regressions.py)."""


@dataclass(frozen=True, slots=True)
class Payload:
    category: str
    key: bytes | None
    value: bytes | None


def _now() -> datetime:
    return datetime.now(UTC)


class Generator:
    """Builds payloads from one seeded random source; `tag` makes ids unique per run."""

    def __init__(self, seed: int, tag: str, leads: list[str], now: datetime | None = None) -> None:
        self.rng = random.Random(seed)
        self.tag = tag
        self.leads = leads
        self.now = now or _now()
        self.count = 0

    # -- building blocks -------------------------------------------------------------

    def _id(self) -> str:
        self.count += 1
        return f"fz-{self.tag}-{self.count}"

    def _time(self) -> str:
        at = self.now - timedelta(seconds=self.rng.uniform(60, 3600))
        return at.isoformat()

    def _word(self, n: int = 8) -> str:
        return "".join(self.rng.choices(string.ascii_lowercase, k=n))

    def base(self) -> dict[str, Any]:
        """A valid event; bad payloads start from one and break one thing."""
        rng = self.rng
        body: dict[str, Any] = {
            "event_id": self._id(),
            "type": rng.choice(["page_view", "form_submit", "email_open", "demo_request"]),
            "occurred_at": self._time(),
        }
        if rng.random() < 0.8:
            body["lead_id"] = rng.choice(self.leads)
        else:
            body["anonymous_id"] = f"anon-{self.tag}-{rng.randrange(50)}"
        if body["type"] == "page_view":
            body["properties"] = {"url": rng.choice(["https://a.io/pricing", "https://a.io/blog"])}
        if rng.random() < 0.2:
            body["traits"] = {"company_size": rng.choice([10, 300, 3000])}
        return body

    def _set(self, body: dict[str, Any], field: str, value: Any) -> bytes:
        return json.dumps({**body, field: value}).encode()

    def _in_tree(self, value: Any) -> dict[str, Any]:
        """`value` somewhere inside properties or traits."""
        body = self.base()
        where = self.rng.choice(["properties", "traits"])
        tree: dict[str, Any] = {"ok": 1}
        node = tree
        for _ in range(self.rng.randrange(0, 3)):
            node[self._word(3)] = node = {}
        node[self._word(4)] = value
        body[where] = tree
        return body

    # -- categories of bad payloads ----------------------------------------------------

    def truncated_json(self) -> bytes:
        raw = json.dumps(self.base()).encode()
        return raw[: self.rng.randrange(0, len(raw) - 1)]

    def not_an_object(self) -> bytes:
        return self.rng.choice(
            [
                json.dumps([self.base()]),
                json.dumps(self._id()),
                str(self.rng.randrange(-(10**9), 10**9)),
                "null",
                "true",
                "[]",
            ]
        ).encode()

    def wrong_type(self) -> bytes:
        body = self.base()
        rng = self.rng
        field, value = rng.choice(
            [
                ("event_id", rng.choice([rng.randrange(10**6), [body["event_id"]], None, True])),
                ("type", rng.choice([7, ["page_view"], {"name": "page_view"}, None])),
                ("lead_id", rng.choice([42, [self._id()], {"id": self._id()}, False])),
                ("anonymous_id", rng.choice([3.5, [self._id()], True])),
                ("occurred_at", rng.choice([True, [body["occurred_at"]], {"t": 1}, "yesterday"])),
                ("occurred_at", rng.choice([None, "", "2026-13-45T99:00:00Z", "now"])),
                ("properties", rng.choice([[1, 2], "url=/pricing", 5, None])),
                ("traits", rng.choice([["vp"], "vp", 1.5, None])),
            ]
        )
        if field == "event_id" and value is None:
            value = 0  # a null id is a "missing id", its own category
        return self._set(body, field, value)

    def huge_string(self) -> bytes:
        rng = self.rng
        long = rng.randrange(limits.MAX_STRING_LENGTH + 1, 40_000)
        choice = rng.randrange(5)
        if choice == 0:
            return json.dumps(self._in_tree("x" * long)).encode()
        if choice == 1:
            field = rng.choice(["event_id", "lead_id", "anonymous_id"])
            size = rng.randrange(limits.MAX_ID_LENGTH + 1, 5000)
            return self._set(self.base(), field, "i" * size)
        if choice == 2:
            size = rng.randrange(limits.MAX_TYPE_LENGTH + 1, 2000)
            return self._set(self.base(), "type", "a" * size)
        if choice == 3:
            key = "k" * rng.randrange(limits.MAX_KEY_LENGTH + 1, 2000)
            return json.dumps(self._in_tree({key: 1})).encode()
        return json.dumps(self._in_tree(["y" * long])).encode()

    def huge_map(self) -> bytes:
        rng = self.rng
        n = rng.randrange(limits.MAX_MAP_ITEMS + 1, 3000)
        if rng.random() < 0.5:
            tree: Any = {f"k{i}": i for i in range(n)}
        else:
            tree = list(range(n))
        body = self.base()
        if isinstance(tree, dict) and rng.random() < 0.5:
            body[rng.choice(["properties", "traits"])] = tree
            return json.dumps(body).encode()
        return json.dumps(self._in_tree(tree)).encode()

    def deep_nesting(self) -> bytes:
        rng = self.rng
        depth = rng.choice([limits.MAX_DEPTH + 1, rng.randrange(7, 60), rng.randrange(150, 5000)])
        if depth > 100:  # up to past any parser's recursion limit: raw text, not json.dumps
            opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
            inner = opener * depth + "1" + closer * depth
            head = json.dumps(self.base())[:-1]
            return f'{head}, "properties": {{"deep": {inner}}}}}'.encode()
        node: Any = "bottom"
        for _ in range(depth):
            node = {"d": node} if rng.random() < 0.7 else [node]
        body = self.base()
        body[rng.choice(["properties", "traits"])] = {"deep": node}
        return json.dumps(body).encode()

    def non_finite(self) -> bytes:
        literal = self.rng.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
        marker = "__NONFINITE__"
        raw = json.dumps(self._in_tree(marker))
        return raw.replace(f'"{marker}"', literal).encode()

    def naive_time(self) -> bytes:
        at = self.now - timedelta(minutes=self.rng.randrange(1, 600))
        text = self.rng.choice(
            [
                at.replace(tzinfo=None).isoformat(),
                at.strftime("%Y-%m-%d %H:%M:%S"),
                at.strftime("%Y-%m-%dT%H:%M"),
                at.strftime("%Y-%m-%d"),
            ]
        )
        return self._set(self.base(), "occurred_at", text)

    def ancient_time(self) -> bytes:
        year = self.rng.randrange(1, limits.MIN_EVENT_YEAR)
        return self._set(self.base(), "occurred_at", f"{year:04d}-06-01T12:00:00Z")

    def bad_event_type(self) -> bytes:
        rng = self.rng
        word = self._word(rng.randrange(1, 12))
        value = rng.choice(
            [
                word.upper(),
                word.capitalize(),
                f"{rng.randrange(10)}{word}",
                f"_{word}",
                f"-{word}",
                f"{word} {word}",
                "",
                f"{word}\n",
                f"{word}\t",
                f"{word}/x",
                f"{word}@x",
                f"{word}#1",
                f"pagé_{word}",
                f"{word}\u00a0",
                f"{word}\U0001f600",
                "a" + "b" * limits.MAX_TYPE_LENGTH,
            ]
        )
        return self._set(self.base(), "type", value)

    def invalid_utf8(self) -> bytes:
        rng = self.rng
        raw = json.dumps(self.base()).encode()
        bad = rng.choice(
            [b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xe2\x82", b"\xf8\x88"]
        )
        if rng.random() < 0.3:
            return "caf\u00e9 ".encode("latin-1") + raw  # Latin-1 text, not UTF-8
        quote = raw.index(b'"', 2)  # inside the first key or value
        return raw[:quote] + bad + raw[quote:]

    def empty_key(self) -> bytes:
        value: Any = self.rng.choice([1, "x", {"": 2}])
        body = self._in_tree(value) if self.rng.random() < 0.5 else self.base()
        where = self.rng.choice(["properties", "traits"])
        tree = dict(body.get(where) or {})
        tree[""] = value
        body[where] = tree
        return json.dumps(body).encode()

    def missing_id(self) -> bytes:
        body = self.base()
        choice = self.rng.randrange(5)
        if choice == 0:
            del body["event_id"]
        elif choice == 1:
            body.pop("lead_id", None)
            body.pop("anonymous_id", None)
        elif choice == 2:
            body["lead_id"] = None
            body["anonymous_id"] = None
        elif choice == 3:
            body["event_id"] = ""
        else:
            body[self.rng.choice(["lead_id", "anonymous_id"])] = ""
        return json.dumps(body).encode()

    def control_chars(self) -> bytes:
        rng = self.rng
        char = rng.choice(["\x00", "\x01", "\t", "\n", "\x1b", "\x7f"])
        body = self.base()
        field = rng.choice(["event_id", "lead_id", "anonymous_id"])
        value = f"{self._id()}{char}"
        if rng.random() < 0.3:  # raw, unescaped: not even JSON
            raw = json.dumps({**body, field: "__CTRL__"})
            return raw.replace("__CTRL__", value).encode()
        return self._set(body, field, value)

    def extra_field(self) -> bytes:
        name = self.rng.choice(["userId", "timestamp", "context", "eventId", "lead"])
        return self._set(self.base(), name, self._word())

    def oversized(self) -> bytes:
        rng = self.rng
        size = rng.randrange(limits.MAX_MESSAGE_BYTES + 1, MAX_OVERSIZED_BYTES)
        body = self.base()
        raw = json.dumps(body).encode()
        choice = rng.randrange(3)
        if choice == 0:  # an otherwise valid event, padded with whitespace
            return raw[:-1] + b" " * (size - len(raw)) + b"}"
        if choice == 1:  # a payload dump
            filler = "".join(rng.choices(string.ascii_letters, k=64))
            blob = (filler * (size // 64 + 1))[: size - len(raw) - 20]
            return json.dumps({**body, "properties": {"dump": blob}}).encode()
        return raw + b"\xff" * (size - len(raw))  # binary junk after it

    def empty(self) -> bytes:
        return self.rng.choice([b"", b" ", b"\n", b"\t\r\n ", b"{}"])

    def syntax_junk(self) -> bytes:
        raw = json.dumps(self.base())
        return self.rng.choice(
            [
                raw + raw,
                raw + "x",
                "\ufeff" + raw,
                raw.replace('"', "'"),
                raw.replace(":", "=", 1),
                raw.replace('"event_id"', "event_id"),
                raw[:-1] + ",}",
                raw.replace('": "', '": "\\q', 1),
                raw.replace(raw[1:12], raw[1:12] + "\\ud800"),
                "\x00" + raw,
            ]
        ).encode()

    def duplicate_key(self) -> bytes:
        raw = json.dumps(self.base())
        bad = self.rng.choice(['"event_id": 5', '"type": "Page View"', '"occurred_at": "x"'])
        return (raw[:-1] + ", " + bad + "}").encode()

    def huge_number(self) -> bytes:
        digits = self.rng.randrange(4400, 20_000)
        marker = "__BIG__"
        raw = json.dumps(self._in_tree(marker))
        return raw.replace(f'"{marker}"', "9" * digits).encode()

    # -- the mix ---------------------------------------------------------------------

    CATEGORIES: tuple[tuple[str, int], ...] = (
        ("truncated_json", 10),
        ("not_an_object", 4),
        ("wrong_type", 12),
        ("huge_string", 7),
        ("huge_map", 5),
        ("deep_nesting", 6),
        ("non_finite", 6),
        ("naive_time", 6),
        ("ancient_time", 3),
        ("bad_event_type", 8),
        ("invalid_utf8", 7),
        ("empty_key", 4),
        ("missing_id", 7),
        ("control_chars", 5),
        ("extra_field", 3),
        ("empty", 2),
        ("syntax_junk", 5),
        ("duplicate_key", 2),
        ("huge_number", 1),
    )

    def kafka_key(self, body_key: str) -> bytes | None:
        """Bad input arrives with all sorts of keys."""
        return self.rng.choice(
            [body_key.encode(), None, b"", b"\xff\xfe-not-utf8", b"tracker-7", body_key.encode()]
        )

    def bad(self, n: int, oversized: int = 0, tombstones: int = 0) -> list[Payload]:
        """`n` bad payloads: `oversized` and `tombstones` of them of those kinds, the rest mixed."""
        names = [name for name, _ in self.CATEGORIES]
        weights = [w for _, w in self.CATEGORIES]
        plan = ["oversized"] * oversized + ["tombstone"] * tombstones
        plan += self.rng.choices(names, weights, k=n - len(plan))
        self.rng.shuffle(plan)
        result = []
        for name in plan:
            key = self.kafka_key(self.rng.choice(self.leads))
            if name == "tombstone":  # Kafka needs a key or a value
                result.append(Payload(name, key or b"tombstone", None))
                continue
            make: Callable[[], bytes] = getattr(self, name)
            result.append(Payload(name, key, make()))
        return result

    # -- valid, at the edges -------------------------------------------------------------

    def valid(self, lead: str | None = None, anonymous: str | None = None) -> dict[str, Any]:
        """A valid event for `lead` (or an anonymous id), sometimes right at a limit."""
        rng = self.rng
        body = self.base()
        body.pop("anonymous_id", None)
        body.pop("lead_id", None)
        if lead is not None:
            body["lead_id"] = lead
        else:
            body["anonymous_id"] = anonymous
        edge = rng.randrange(12)
        if edge == 0:
            body["event_id"] = (body["event_id"] + "-" + "e" * 200)[: limits.MAX_ID_LENGTH]
        elif edge == 1:
            body["type"] = ("custom." + self._word(70))[: limits.MAX_TYPE_LENGTH]
        elif edge == 2:
            body["properties"] = {f"p{i}": i for i in range(limits.MAX_MAP_ITEMS)}
        elif edge == 3:
            node: Any = 1
            for _ in range(limits.MAX_DEPTH - 1):
                node = {"d": node}
            body["traits"] = {"deep": node}
        elif edge == 4:
            body["properties"] = {"url": "https://a.io/pricing?" + "q" * 4000}
        elif edge == 5:
            # ahead of the record time, but within the worker's allowed skew (300 s):
            # kept as sent (later times are clamped, see test_skew_and_bounds.py)
            ahead = self.now + timedelta(seconds=rng.uniform(1, 200))
            body["occurred_at"] = ahead.isoformat()
        elif edge == 6:
            body["properties"] = {"note": "caf\u00e9 \u4e2d\u6587 \U0001f600", "n": -0.0}
        elif edge == 7:
            body["occurred_at"] = (
                (self.now - timedelta(minutes=5)).astimezone(_tz(timedelta(hours=-7))).isoformat()
            )
        return body


def _tz(offset: timedelta) -> Any:
    from datetime import timezone

    return timezone(offset)
