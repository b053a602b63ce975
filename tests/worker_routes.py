"""The worker's HTTP routes as its aiohttp router lists them, and a path that reaches each."""

from __future__ import annotations

import re
from typing import Any

from leadpulse.scoring import ScoringModel
from leadpulse.streams.processes.worker import assemble
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import MemoryLeadStore


def listed_routes(web_app: Any) -> list[tuple[str, str]]:
    """(method, pattern) of every route of an aiohttp application, in its router's order."""
    return [(route.method, route.resource.canonical) for route in web_app.router.routes()]


def worker_routes(settings: Settings, model: ScoringModel) -> list[tuple[str, str]]:
    """The routes a worker built from `settings` serves (built here, never started)."""
    pipeline = assemble(settings, model, store=MemoryLeadStore())
    pipeline.app.web.init_server()
    return listed_routes(pipeline.app.web.web_app)


def reachable(pattern: str) -> str:
    """A path the pattern matches: each ``{name}`` becomes ``x``."""
    return re.sub(r"\{[^}]+\}", "x", pattern)
