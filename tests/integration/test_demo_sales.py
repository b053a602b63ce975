"""`leadpulse demo`'s simulated sales on the real stack: every answer it sends is applied.

A short demo (its own embedded stack, worker and collector, as `leadpulse
demo` runs them): the sales desk answers the handoffs it sees through the
collector's sales key, and the worker applies every answer to the handoff it
names (none stale, none refused). Buyers end as SQLs, rejected leads in
nurture. Which handoff gets which answer is pinned by the unit tests
(tests/unit/test_demo_sales.py); here, that the answers are right for the
worker.
"""

from __future__ import annotations

from leadpulse.streams.dev.demo import DemoOptions, DemoRun, simulate
from leadpulse.streams.dev.sales import ACCEPTED, NOT_ANSWERED, QUALIFIED, REJECTED

ALLOWED = {
    "buyer": {QUALIFIED, NOT_ANSWERED},
    "evaluator": {ACCEPTED, REJECTED, NOT_ANSWERED},
    "student": {REJECTED, NOT_ANSWERED},
    "job_seeker": {REJECTED, NOT_ANSWERED},
}


def test_the_demos_sales_answers_are_applied_by_the_worker() -> None:
    run = simulate(DemoOptions(leads=80, duration=20.0, seed=7, cooldown=12.0))
    assert isinstance(run, DemoRun), f"the demo did not start (exit status {run})"
    desk, check = run.desk, run.check
    assert desk is not None
    assert check is not None
    assert len(desk.log) == len(run.watcher.handoffs) > 0  # every handoff seen went to sales
    for seen in desk.log:
        assert seen.kind in ALLOWED, seen
        assert seen.answer.outcome in ALLOWED[seen.kind], seen
        assert all(f.properties["handoff_id"] == seen.handoff_id for f in seen.answer.events)
    outcomes = {seen.answer.outcome for seen in desk.log}
    assert {QUALIFIED, REJECTED} <= outcomes, desk.outcomes
    # every feedback event sent was applied to the handoff it names
    assert check.sent == sum(len(seen.answer.events) for seen in desk.log)
    assert check.sent > 0
    assert (check.applied, check.refused, check.missing) == (check.sent, [], 0)
    for seen in desk.log:
        stage = check.stages.get(seen.lead_id)
        if seen.answer.outcome == QUALIFIED:
            assert stage == "sql", seen
        elif seen.answer.outcome == REJECTED:
            assert stage == "nurture", seen
    # the moves sales caused are the worker's transitions naming the desk's events
    moves = run.watcher.counts
    assert moves["sales:sal->sql"] == desk.outcomes[QUALIFIED]
    assert moves["sales:sal->nurture"] + moves["sales:sql->nurture"] == desk.outcomes[REJECTED]
    # the worker scored the answers too: the collector took them as events like any other
    collector = run.stats["collector"]
    assert run.stats["scored"] == collector["accepted"]
    assert collector["accepted"] == run.sent - collector["rejected"] + check.sent
