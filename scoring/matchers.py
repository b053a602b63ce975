"""Plain, declarative matchers: a model file can select events, never run code.

One vocabulary serves both sections: engagement conditions test event
properties, fit rules test profile traits. Comparison is type-aware on purpose
(``1`` never equals ``true``, ``"50"`` is not a number) so a rule means the same
thing whatever language the tracker was written in.


Validators raise ValueError, never TypeError: pydantic reports only the former
as a located validation error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Final, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    model_validator,
)

Scalar = str | int | float | bool
SPEC_CONFIG: Final = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
OPS: Final = ("equals", "in", "between", "exists")
_PATH_SEGMENT: Final = re.compile(r"^[^.\s]{1,64}$")


class _Missing:
    """Absent key, distinct from an explicit JSON null."""


MISSING: Final = _Missing()


def describe(value: object) -> str:
    """How a YAML value reads back to its author in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    if isinstance(value, float):
        return number(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(describe(item) for item in value) + "]"
    if isinstance(value, dict):
        return "a mapping"
    return str(value)


def number(value: float) -> str:
    """50.0 reads as 50 and 10000000 never as 1e+07."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalar(value: object) -> Scalar:
    if isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {describe(value)}")
        return value
    raise ValueError(f"expected a string, number or boolean, got {describe(value)}")


def _scalars(value: object) -> tuple[Scalar, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of values, got {describe(value)}")
    return tuple(_scalar(item) for item in value)


def _range(value: object) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(is_number(item) and math.isfinite(item) for item in value)
    ):
        raise ValueError(f"expected [low, high] with two numbers, got {describe(value)}")
    low, high = float(value[0]), float(value[1])
    if low > high:
        raise ValueError(f"low {describe(value[0])} is greater than high {describe(value[1])}")
    return low, high


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {describe(value)}")  # noqa: TRY004
    return value


def _path(value: object) -> tuple[str, ...]:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a field name, got {describe(value)}")
    segments = tuple(value.split("."))
    if len(value) > 128 or not all(_PATH_SEGMENT.match(segment) for segment in segments):
        raise ValueError(
            f"invalid field name {describe(value)}: use a name or a dotted path like utm.source"
        )
    return segments


FieldPath = Annotated[
    tuple[str, ...],
    BeforeValidator(_path),
    PlainSerializer(".".join, return_type=str),
]
"""A dotted name into nested properties or traits, split once at load time."""


def lookup(tree: dict[str, JsonValue], path: tuple[str, ...]) -> JsonValue | _Missing:
    node: JsonValue | _Missing = tree
    for segment in path:
        if not isinstance(node, dict) or segment not in node:
            return MISSING
        node = node[segment]
    return node


def same_key(value: object) -> tuple[str, object] | None:
    """A set key under which values are `same`; None for what never matches a scalar."""
    if isinstance(value, bool):
        return ("bool", value)
    if is_number(value):
        return ("number", value)  # 1 and 1.0 hash and compare equal, as `same` says
    if isinstance(value, str):
        return ("str", value)
    return None


def same(left: object, right: object) -> bool:
    """Equality without Python's coercions (True == 1, 1 == 1.0 is kept)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if is_number(left) and is_number(right):
        return left == right
    return isinstance(left, str) and isinstance(right, str) and left == right


class Ops(BaseModel):
    """Exactly one operator per condition keeps every rule readable at a glance."""

    model_config = SPEC_CONFIG

    equals: Annotated[Scalar | None, BeforeValidator(_scalar)] = None
    in_: Annotated[tuple[Scalar, ...] | None, BeforeValidator(_scalars)] = Field(
        default=None, alias="in"
    )
    between: Annotated[tuple[float, float] | None, BeforeValidator(_range)] = None
    exists: Annotated[bool | None, BeforeValidator(_flag)] = None

    def ops_given(self) -> list[str]:
        values = (self.equals, self.in_, self.between, self.exists)
        return [name for name, value in zip(OPS, values, strict=True) if value is not None]

    def check_one_op(self, subject: str) -> None:
        given = self.ops_given()
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(
                f"{subject} needs exactly one of equals, in, between, exists (found: {found})"
            )

    def test(self, value: JsonValue | _Missing) -> bool:
        if self.exists is not None:
            return (value is not MISSING and value is not None) == self.exists
        if self.equals is not None:
            return same(value, self.equals)
        if self.in_ is not None:
            return any(same(value, option) for option in self.in_)
        if self.between is not None:
            low, high = self.between
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            return low <= value <= high
        return False

    def predicate(self) -> Callable[[JsonValue | _Missing], bool]:
        """`test` as a plain function, built once per model: `in` becomes a set lookup.

        Fit runs every rule against a lead's traits whenever its grade is
        needed; scanning long industry lists with `same` dominated that.
        """
        if self.in_ is not None:
            options = frozenset(k for k in map(same_key, self.in_) if k is not None)
            return lambda value: same_key(value) in options
        return self.test

    def describe_op(self) -> str:
        if self.exists is not None:
            return "exists" if self.exists else "is missing"
        if self.equals is not None:
            return f"= {describe(self.equals)}"
        if self.in_ is not None:
            return f"in {describe(self.in_)}"
        if self.between is not None:
            return f"between [{number(self.between[0])}, {number(self.between[1])}]"
        return "?"


class Condition(Ops):
    """``{url_contains: ...}`` or ``{property: NAME, <op>: ARG}``."""

    url_contains: Annotated[str | None, Field(min_length=1)] = None
    property_: Annotated[FieldPath | None, Field(alias="property")] = None

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if self.url_contains is not None:
            if self.property_ is not None:
                raise ValueError("use either url_contains or property, not both")
            if self.ops_given():
                raise ValueError(
                    f"url_contains takes no operator (found: {', '.join(self.ops_given())})"
                )
            return self
        if self.property_ is None:
            raise ValueError("a condition needs url_contains or property")
        self.check_one_op("a property condition")
        return self

    def matches(self, properties: dict[str, JsonValue]) -> bool:
        if self.url_contains is not None:
            url = properties.get("url")
            return isinstance(url, str) and self.url_contains in url
        assert self.property_ is not None  # guaranteed by _one_form
        return self.test(lookup(properties, self.property_))

    def compiled(self) -> Callable[[dict[str, JsonValue]], bool]:
        """`matches` as a plain function, built once per model (every event runs it)."""
        needle = self.url_contains
        if needle is not None:

            def url_has(properties: dict[str, JsonValue]) -> bool:
                url = properties.get("url")
                return isinstance(url, str) and needle in url

            return url_has
        path, test = self.property_, self.predicate()
        assert path is not None  # guaranteed by _one_form
        return lambda properties: test(lookup(properties, path))

    def __str__(self) -> str:
        if self.url_contains is not None:
            return f"url contains {describe(self.url_contains)}"
        assert self.property_ is not None
        return f"{'.'.join(self.property_)} {self.describe_op()}"
