"""Topics at a process's start (`--create-topics`), for processes that must start anyway."""

from __future__ import annotations

import concurrent.futures
import logging

from leadpulse.streams.settings import Settings

log = logging.getLogger("leadpulse")


def create_topics_if_reachable(settings: Settings) -> None:
    """Create missing topics; a broker that is down now is not a reason to stay down."""
    from leadpulse.streams.kafka.topics import ensure_topics

    # kafka-python logs every failed connection attempt at ERROR: one warning says it here
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    # kafka-python's admin client sets an event loop on its thread: keep it off this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(ensure_topics, settings).result()
        except Exception as error:  # noqa: BLE001 -- the process waits for Kafka like any client
            log.warning("could not check the topics (%s); starting anyway", error)
        finally:
            kafka_log.setLevel(level)
