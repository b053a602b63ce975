"""The worker process: topics checked, store re-indexed, the Faust worker run and stopped."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from leadpulse.scoring import ScoringModel
from leadpulse.streams.errors import FatalError
from leadpulse.streams.processes.lifecycle import EXIT_RESTART, ShutdownDeadline, new_event_loop
from leadpulse.streams.settings import Settings

if TYPE_CHECKING:
    from leadpulse.streams.kafka.publisher import Publisher
    from leadpulse.streams.pipeline.app import Pipeline
    from leadpulse.streams.store import LeadStore

log = logging.getLogger("leadpulse")


def run_worker(settings: Settings, model: ScoringModel, *, loglevel: str = "info") -> int:
    """Run the Faust worker until SIGINT/SIGTERM; returns its exit status.

    `EXIT_RESTART` when it stopped because it must be started again (the
    store lost processed progress): the supervisor restarts it, and the new
    process resumes every partition from the store's record. Restarting is
    the supervisor's job, not an exec in the event loop: it sees and counts
    each restart and spaces them out.
    """
    import faust

    from leadpulse.streams.kafka.transport import check_versions
    from leadpulse.streams.pipeline.app import freeze_heap
    from leadpulse.streams.store.redis import RedisLeadStore

    check_versions()
    namespace = resolve_namespace(settings)
    model = check_model(settings, model, namespace=namespace)
    reindex_store(settings, namespace)
    # faust.Worker chdirs into workdir and exits with status 1, silently, if it is missing
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    deadline = ShutdownDeadline(settings.shutdown_timeout, "worker")
    fatal: list[FatalError] = []

    def must_restart(error: FatalError) -> None:
        if fatal:
            return
        fatal.append(error)
        log.error(
            "%s; stopping with status %d for the supervisor to start the worker again "
            "(it then reads those events again)",
            error,
            EXIT_RESTART,
        )
        deadline.arm(EXIT_RESTART)
        os.kill(os.getpid(), signal.SIGTERM)  # the graceful stop an operator's SIGTERM gets

    class Worker(faust.Worker):
        def _schedule_shutdown(self, signum: signal.Signals) -> None:
            # mode's one entry for SIGINT and SIGTERM: the deadline starts with the stop
            deadline.arm()
            super()._schedule_shutdown(signum)

    store = RedisLeadStore.from_settings(settings, namespace)
    pipeline = assemble(settings, model, store=store, on_fatal=must_restart)
    worker: Any = Worker(
        pipeline.app,
        loglevel=loglevel,
        loop=new_event_loop(),
        redirect_stdouts=False,
        workdir=str(settings.data_dir),
    )
    freeze_heap()
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        if fatal:
            return EXIT_RESTART
        return done.code if isinstance(done.code, int) else 1
    return EXIT_RESTART if fatal else 0  # pragma: no cover - execute_from_commandline exits


def assemble(
    settings: Settings,
    model: ScoringModel,
    *,
    store: LeadStore,
    publisher: Publisher | None = None,
    clock: Callable[[], float] = time.time,
    on_fatal: Callable[[FatalError], None] | None = None,
) -> Pipeline:
    """The worker's pipeline with its HTTP routes: where the stream side and HTTP meet.

    Tests build the same worker with a fake publisher and an in-memory store.
    """
    from leadpulse.streams.http.routes import serve_worker
    from leadpulse.streams.pipeline.app import build

    pipeline = build(
        settings, model, store=store, publisher=publisher, clock=clock, on_fatal=on_fatal
    )
    serve_worker(pipeline.app, pipeline, settings=settings, model=model, store=store, clock=clock)
    return pipeline


def prepare_topics(settings: Settings, *, create: bool) -> None:
    """Create the topics if asked, then refuse to start on a partition-count mismatch.

    A broker that does not answer yet is not a reason to refuse: the worker
    waits for Kafka like any client.
    """
    from leadpulse.streams.kafka.topics import (
        PartitionMismatchError,
        check_partitions,
        ensure_topics,
    )

    def run() -> None:
        if create:
            ensure_topics(settings)
        check_partitions(settings)

    # kafka-python 3's admin client sets an asyncio event loop on the calling
    # thread; the Faust worker started after it on that thread exits at once
    # (status 1, no log). A short-lived thread keeps that loop away from it.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(run).result()
        except PartitionMismatchError as error:
            raise SystemExit(f"leadpulse worker: {error}") from None
        except Exception as error:
            if create:
                raise
            log.warning("cannot check the events topic's partitions yet: %s", error)


def reindex_store(settings: Settings, namespace: str | None = None) -> None:
    """Bring the store's indexes to this release's layout (after an upgrade), once.

    Runs before the worker starts, on a loop and client of its own. If Redis
    cannot be reached now, the worker starts anyway and the next start tries
    again: until then, leads indexed by the previous release are not swept.
    """
    from leadpulse.streams.store.redis import RedisLeadStore

    async def run() -> int:
        store = RedisLeadStore.from_settings(settings, namespace)
        try:
            return await store.reindex()
        finally:
            await store.close()

    try:
        moved = asyncio.run(run())
    except Exception as error:  # noqa: BLE001 -- the worker must still start
        log.warning("could not check the store's index layout (%s); will retry next start", error)
        return
    if moved:
        log.info("re-indexed %d due and outbox entries for this release's layout", moved)


MODEL_CHECK_TIMEOUT = 30.0
"""Seconds a starting worker tries to read the namespace's model record before it gives up."""


SWITCH_WAIT = 300.0
"""Seconds a starting worker waits for a `leadpulse model apply` to finish switching."""


def resolve_namespace(
    settings: Settings, *, timeout: float = MODEL_CHECK_TIMEOUT, wait: float = SWITCH_WAIT
) -> str:
    """The namespace to score in: the active one (`streams.store.namespaces`).

    While `leadpulse model apply` switches away from it (its fence is set),
    the worker waits for the switch, then scores in the new namespace from
    the switch point. Redis not answering within `timeout`, or a switch
    taking longer than `wait`, exits with `EXIT_RESTART`.
    """
    from leadpulse.streams.store.namespaces import Deployment
    from leadpulse.streams.store.redis import RedisLeadStore

    async def look() -> tuple[str, str | None]:
        deployment = Deployment.from_settings(settings)
        try:
            namespace = await deployment.active_namespace()
        finally:
            await deployment.close()
        store = RedisLeadStore.from_settings(settings, namespace)
        try:
            fence = await store.fence(settings.events_topic)
        finally:
            await store.close()
        return namespace, None if fence is None else fence.to

    failed_until = time.monotonic() + timeout
    waited_until = time.monotonic() + wait
    told = False
    while True:
        try:
            namespace, switching_to = asyncio.run(look())
        except Exception as error:  # noqa: BLE001 -- Redis away: retried, then a restart
            if time.monotonic() >= failed_until:
                log.error(  # noqa: TRY400 -- Redis away: the reason, not a traceback
                    "cannot read the deployment's active namespace from Redis (%s); stopping "
                    "with status %d for the supervisor to start the worker again",
                    error,
                    EXIT_RESTART,
                )
                raise SystemExit(EXIT_RESTART) from None
            time.sleep(1.0)
            continue
        if switching_to is None:
            if namespace != settings.redis_prefix:
                _announce(logging.INFO, f"scoring in namespace {namespace} (model apply)")
            return namespace
        if not told:
            _announce(
                logging.WARNING,
                f"leadpulse model apply is switching from namespace {namespace} to "
                f"{switching_to}; waiting for the switch (`leadpulse model status`)",
            )
            told = True
        if time.monotonic() >= waited_until:
            log.error("the switch took longer than %.0f s; stopping to be restarted", wait)
            raise SystemExit(EXIT_RESTART)
        time.sleep(0.5)


def check_model(
    settings: Settings,
    model: ScoringModel,
    *,
    namespace: str | None = None,
    timeout: float = MODEL_CHECK_TIMEOUT,
) -> ScoringModel:
    """Refuse to start with a model the namespace's states were not built with.

    See `streams.processes.models`: records the model on the first start,
    and with ``--forward-only`` on a change; else exits (status 1) with the
    refusal on stderr. A Redis that does not answer within `timeout` exits
    with `EXIT_RESTART`, for the supervisor to try again: scoring without
    knowing the namespace's model is what this check prevents. Returns the
    model to score with: the worker's, or the one `leadpulse model apply`
    switched the namespace to when the worker's file holds the one it replaced.
    """
    from leadpulse.streams.processes.models import ModelRefusedError, model_source, reconcile_model
    from leadpulse.streams.store.models import ModelRecordError
    from leadpulse.streams.store.redis import RedisLeadStore

    namespace = namespace or settings.redis_prefix
    try:
        text, origin = model_source(settings, model)
    except ModelRefusedError as refused:
        raise SystemExit(f"leadpulse worker: {refused}") from None

    async def run() -> Any:
        store = RedisLeadStore.from_settings(settings, namespace)
        try:
            return await reconcile_model(
                store,
                model,
                text=text,
                origin=origin,
                namespace=namespace,
                now=time.time(),
                forward_only=settings.forward_only,
            )
        finally:
            await store.close()

    deadline = time.monotonic() + timeout
    started = None
    while started is None:
        try:
            started = asyncio.run(run())
        except ModelRefusedError as refused:
            raise SystemExit(f"leadpulse worker: {refused}") from None
        except ModelRecordError as error:
            raise SystemExit(
                f"leadpulse worker: the model record of namespace '{namespace}' "
                f"(Redis key {namespace}:model) cannot be read: {error}. Delete the key to "
                "record this worker's model again."
            ) from None
        except Exception as error:  # noqa: BLE001 -- Redis away: retried, then a restart
            failure = error
            if time.monotonic() >= deadline:
                break
            time.sleep(1.0)
    if started is None:
        log.error(
            "cannot read the namespace's model record from Redis (%s); stopping with "
            "status %d for the supervisor to start the worker again",
            failure,
            EXIT_RESTART,
        )
        raise SystemExit(EXIT_RESTART)
    if started.how == "first-start":
        _announce(
            logging.INFO,
            f"recorded model {model.model_version} (from {origin}) as namespace "
            f"'{namespace}''s model",
        )
    elif started.how == "forward-only":
        assert started.previous is not None
        before = started.previous
        by = "" if started.by_us else " (another worker starting now recorded the switch)"
        _announce(
            logging.WARNING,
            f"forward-only: namespace '{namespace}' switches from model {before.version} "
            f"(from {before.origin}) to {model.model_version} (from {origin}); its states keep "
            f"what {before.version} folded in, new events score under {model.model_version}, "
            f"history is not rescored{by}",
        )
    elif started.how == "adopted":
        record = started.record
        _announce(
            logging.WARNING,
            f"namespace '{namespace}' was built by leadpulse model apply with model "
            f"{record.version} (from {record.origin}), replacing {model.model_version}, which "
            f"this worker's model file {origin} holds: scoring with {record.version}, the "
            "namespace's recorded model. Point LEADPULSE_MODEL_FILE at that model's file.",
        )
        try:
            adopted: ScoringModel = record.model()
        except ModelRecordError as error:
            raise SystemExit(f"leadpulse worker: {error}") from None
        return adopted
    return model


def _announce(level: int, text: str) -> None:
    """Log `text` before the Faust worker has set logging up: with its level, on stderr."""
    if logging.getLogger().handlers:
        log.log(level, text)
        return
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    print(
        f"[{stamp}] [{logging.getLevelName(level)}] leadpulse: {text}", file=sys.stderr, flush=True
    )
