"""The framework ceiling: a bare Faust agent that only decodes each event.

Same `faust.App` settings and consumer fetch wait as the real worker
(`streams.pipeline.app.faust_settings`, `streams.kafka.transport.consumer_transport`),
same raw-bytes topic, `concurrency=1`, the same `take_events` batching and the
same uvloop event loop as `leadpulse worker`; per event it only runs
`schemas.decode_event`, so nothing is stored and nothing is published. It
serves the worker's /stats shape (`scored`, `dead_lettered`, `first_batch_at`,
`last_batch_at`, `assigned_partitions`) so the benchmark polls both alike.

Run as a child process: `python -m bench.faust_floor`, configured like the
worker through LEADPULSE_* variables (`streams.dev.workerproc.worker_command`).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import faust

from leadpulse.schemas import DecodeError, decode_event
from leadpulse.streams.kafka.transport import consumer_transport, fetch_max_wait_ms, raw_topic
from leadpulse.streams.pipeline.app import faust_settings
from leadpulse.streams.processes.lifecycle import new_event_loop as _event_loop
from leadpulse.streams.settings import Settings


def build_floor(settings: Settings) -> faust.App:
    app = faust.App(settings.app_id, **faust_settings(settings))
    app.transport = consumer_transport(app, fetch_max_wait_ms(settings))
    events = raw_topic(app, settings.events_topic, settings.partitions)
    totals: dict[str, Any] = {
        "scored": 0,
        "duplicates": 0,
        "dead_lettered": 0,
        "first_batch_at": None,
        "last_batch_at": None,
    }

    @app.agent(events, concurrency=1, name="bench.floor")
    async def floor(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
            if totals["first_batch_at"] is None:
                totals["first_batch_at"] = time.time()
            if TRACE:
                arrived = time.time()
                lags.extend(arrived - e.message.timestamp for e in batch)
            now = datetime.now(UTC)
            good = bad = 0
            for event in batch:
                try:
                    decode_event(event.message.value or b"", now=now)
                    good += 1
                except DecodeError:
                    bad += 1
            totals["scored"] += good
            totals["dead_lettered"] += bad
            totals["last_batch_at"] = time.time()

    @app.page("/stats")
    async def stats_page(web: Any, request: Any) -> Any:
        try:
            assigned = len(app.consumer.assignment())
        except Exception:
            assigned = 0
        extra = {}
        if lags:
            ordered = sorted(lags)
            extra["lag_ms"] = {
                q: 1000 * ordered[min(len(ordered) - 1, int(float(q) * len(ordered)))]
                for q in ("0.5", "0.95", "0.99")
            }
        return web.json({**totals, "assigned_partitions": assigned, **extra})

    return app


TRACE = bool(os.environ.get("BENCH_FLOOR_TRACE"))
lags: list[float] = []


def main() -> None:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker = faust.Worker(
        build_floor(settings),
        loglevel=settings.log_level,
        loop=_event_loop(),
        redirect_stdouts=False,
        workdir=str(settings.data_dir),
    )
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
