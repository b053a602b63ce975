"""Half-lives are written with a unit (``7d``) so nobody guesses seconds vs days."""

from __future__ import annotations

import math
import re
from typing import Final

UNITS: Final[dict[str, int]] = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
MAX_SECONDS: Final = 3650 * 86_400
"""Ten years: longer half-lives mean a score that never fades, which is a bug."""

HINT: Final = "use e.g. 90s, 30m, 12h, 7d, 2w"
_PATTERN: Final = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")


def parse_duration(value: object) -> float:
    """Seconds of a duration like ``7d``; raises ValueError with a hint otherwise.

    ValueError even for wrong types: pydantic turns only ValueError into a
    validation error with a location.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"invalid duration {_show(value)} ({HINT})")  # noqa: TRY004
    if not isinstance(value, str):
        raise ValueError(f"duration {_show(value)} has no unit ({HINT})")  # noqa: TRY004
    match = _PATTERN.match(value.strip())
    if match is None:
        raise ValueError(f"invalid duration {_show(value)} ({HINT})")
    seconds = float(match.group(1)) * UNITS[match.group(2)]
    if not seconds > 0:
        raise ValueError(f"duration {_show(value)} must be positive")
    if seconds > MAX_SECONDS:
        raise ValueError(f"duration {_show(value)} is longer than 3650d (ten years)")
    return seconds


def format_duration(seconds: float) -> str:
    """The largest unit up to days that divides evenly: 604800 reads as 7d."""
    for unit in ("d", "h", "m", "s"):
        size = UNITS[unit]
        count = seconds / size
        if count >= 1 and math.isclose(count, round(count), rel_tol=0, abs_tol=1e-9):
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"


def _show(value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)
