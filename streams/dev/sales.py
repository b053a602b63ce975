"""The demo's sales team: it answers the handoffs the demo caused, through the sales door.

`leadpulse demo` knows who each simulated lead really is (`demo.plan_funnel`:
buyer, evaluator, student, ...). Sales learns it on the first call, so each
handoff gets the answer a real SDR would give, decided by `answer_for` from
the demo's seed, the lead and which of its handoffs it is (the same answers
for the same seed, whatever the timing):

- a share of every kind's handoffs (`UNANSWERED`) is never answered: the SDR
  did not get to it;
- buyers are accepted, then qualified in the model's framework
  (``lifecycle.sql``) with every criterion the rule needs met: the lead
  becomes an SQL. Without an SQL rule, the legacy ``sales_qualified``;
- evaluators are accepted (and a discovery call records part of the
  framework, short of SQL) or rejected as not ready, about half each;
- students are rejected as a bad fit, job seekers with reason ``other``;
  any other kind handed off as not ready.

`SalesDesk` sends the answers with segment-analytics-python to the collector
under a sales source's write key (`SALES_SOURCE`, trusted for the sales-only
types), as a CRM integration would: ``Sales Accepted``, ``Qualification``,
``Sales Rejected``, each naming the handoff it answers, in order, a moment
after the handoff (`DELAYS`, compressed time as the demo model's).
"""

from __future__ import annotations

import heapq
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from leadpulse.schemas.feedback import (
    FRAMEWORK_CRITERIA,
    QUALIFICATION,
    SALES_ACCEPTED,
    SALES_QUALIFIED,
    SALES_REJECTED,
    Framework,
    RejectionReason,
)
from leadpulse.scoring import ScoringModel

SALES_SOURCE: Final = "crm"
"""The demo collector's source trusted to send sales feedback (as `leadpulse dev`'s)."""

UNANSWERED: Final = 0.15
"""The share of handoffs (of every kind) the demo's sales never answer."""
EVALUATOR_ACCEPTED: Final = 0.5
"""The share of answered evaluator handoffs sales accepts; the others it rejects."""

DELAYS: Final = {"first": (0.5, 2.0), "next": (0.5, 1.5)}
"""Seconds (uniform range) from the handoff to the first answer, and between answers."""

TRACK_NAMES: Final = {
    SALES_ACCEPTED: "Sales Accepted",
    SALES_REJECTED: "Sales Rejected",
    QUALIFICATION: "Qualification",
    SALES_QUALIFIED: "Sales Qualified",
}
"""Segment track names of the feedback types (the collector normalises them back)."""

QUALIFIED: Final = "qualified"
ACCEPTED: Final = "accepted"
REJECTED: Final = "rejected"
NOT_ANSWERED: Final = "unanswered"
OUTCOMES: Final = (QUALIFIED, ACCEPTED, REJECTED, NOT_ANSWERED)
"""What sales did with a handoff: accepted and qualified (SQL), accepted only, rejected, nothing."""

REJECTIONS: Final = {
    "student": (RejectionReason.BAD_FIT, "a student researching for coursework, not a buyer"),
    "job_seeker": (RejectionReason.OTHER, "a job seeker preparing an interview, not a buyer"),
    "evaluator": (RejectionReason.NOT_READY, "evaluating, no project or budget this quarter"),
}
"""Each kind's rejection: reason and the SDR's note; other kinds as not ready."""


@dataclass(frozen=True)
class Feedback:
    """One feedback event to send: its type and properties (``handoff_id`` included)."""

    type: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """What sales does with one handoff: an outcome and the feedback events, in order."""

    outcome: str
    events: tuple[Feedback, ...] = ()


def answer_for(
    kind: str | None, lead_id: str, nth: int, handoff_id: str, *, seed: int, model: ScoringModel
) -> Answer:
    """Sales' answer to the `nth` handoff (1, 2, ...) of `lead_id`, a lead of `kind`.

    Decided by (`seed`, `lead_id`, `nth`) only; `handoff_id` is what the
    answer names. A lead the demo did not simulate (`kind` None) is not
    answered.
    """
    rng = random.Random(f"{seed}/{lead_id}/{nth}")
    if kind is None or rng.random() < UNANSWERED:
        return Answer(NOT_ANSWERED)
    accept = Feedback(SALES_ACCEPTED, {"handoff_id": handoff_id})
    if kind == "buyer":
        return Answer(QUALIFIED, (accept, qualified(model, handoff_id)))
    if kind == "evaluator" and rng.random() < EVALUATOR_ACCEPTED:
        discovery = discovery_call(model, handoff_id)
        return Answer(ACCEPTED, (accept,) if discovery is None else (accept, discovery))
    reason, note = REJECTIONS.get(kind, (RejectionReason.NOT_READY, "not ready to buy"))
    rejected = {"handoff_id": handoff_id, "reason": reason.value, "note": note}
    return Answer(REJECTED, (Feedback(SALES_REJECTED, rejected),))


def qualified(model: ScoringModel, handoff_id: str) -> Feedback:
    """A qualification meeting the model's SQL rule (every criterion met), else the legacy one."""
    rule = model.lifecycle.sql
    if rule is None:
        return Feedback(SALES_QUALIFIED, {"handoff_id": handoff_id})
    criteria = dict.fromkeys(FRAMEWORK_CRITERIA[rule.framework], "met")
    properties = {"handoff_id": handoff_id, "framework": rule.framework.value}
    return Feedback(QUALIFICATION, {**properties, "criteria": criteria})


def discovery_call(model: ScoringModel, handoff_id: str) -> Feedback | None:
    """An evaluator's first call: the framework's first criterion met, short of SQL.

    None without an SQL rule, or when one met criterion would already qualify.
    """
    rule = model.lifecycle.sql
    if rule is None:
        return None
    first = FRAMEWORK_CRITERIA[rule.framework][0]
    if rule.needed <= 1 and set(rule.require) <= {first}:
        return None
    criteria = {first: "met"}
    return Feedback(
        QUALIFICATION,
        {"handoff_id": handoff_id, "framework": rule.framework.value, "criteria": criteria},
    )


@dataclass(frozen=True)
class Answered:
    """One handoff the desk saw: whose, of which kind (None: not simulated), and its answer."""

    lead_id: str
    handoff_id: str
    kind: str | None
    answer: Answer


@dataclass(order=True)
class _Due:
    at: float
    order: int
    lead_id: str = field(compare=False)
    feedback: Feedback = field(compare=False)
    event_id: str = field(compare=False)


class SalesDesk(threading.Thread):
    """Answers handoffs (`handoff`) through the collector, each answer when it is due.

    `sent` maps lead id -> event ids of the feedback sent for it (to check
    that the worker applied them); `outcomes` counts the handoffs per outcome
    and `by_kind` per (kind, outcome).
    """

    def __init__(
        self,
        client: Any,
        kinds: dict[str, str],
        *,
        seed: int,
        model: ScoringModel,
        say: bool = True,
    ) -> None:
        super().__init__(daemon=True)
        self.client, self.kinds, self.seed, self.model, self.say = client, kinds, seed, model, say
        self.outcomes: Counter[str] = Counter()
        self.by_kind: Counter[tuple[str, str]] = Counter()
        self.sent: dict[str, list[str]] = {}
        self.answered: dict[str, Answer] = {}
        """Handoff id -> sales' answer."""
        self.event_ids: set[str] = set()
        """Every feedback event id sent (the worker's transitions name the event)."""
        self.log: list[Answered] = []
        """Every handoff answered (or not), in the order seen."""
        self._handoffs: Counter[str] = Counter()
        self._queue: list[_Due] = []
        self._last_due: dict[str, float] = {}
        self._order = 0
        self._lock = threading.Condition()
        self._closing = False
        self._rng = random.Random(f"{seed}/delays")

    def handoff(self, lead_id: str, handoff_id: str) -> Answer:
        """Decide the answer to a handoff just seen and queue its events."""
        with self._lock:
            if handoff_id in self.answered:
                return self.answered[handoff_id]
            self._handoffs[lead_id] += 1
            kind = self.kinds.get(lead_id)
            answer = answer_for(
                kind,
                lead_id,
                self._handoffs[lead_id],
                handoff_id,
                seed=self.seed,
                model=self.model,
            )
            self.answered[handoff_id] = answer
            self.log.append(Answered(lead_id, handoff_id, kind, answer))
            self.outcomes[answer.outcome] += 1
            self.by_kind[(kind or "unknown", answer.outcome)] += 1
            due = max(time.monotonic(), self._last_due.get(lead_id, 0.0))
            for i, feedback in enumerate(answer.events):
                due += self._rng.uniform(*DELAYS["first" if i == 0 else "next"])
                self._order += 1
                item = _Due(due, self._order, lead_id, feedback, str(uuid.uuid4()))
                heapq.heappush(self._queue, item)
            self._last_due[lead_id] = due  # a lead's answers go out in the order of its handoffs
            self._lock.notify()
            return answer

    def close(self, timeout: float = 15.0) -> None:
        """Send every queued answer (they are due within seconds), flush, stop."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        self.join(timeout)
        self.client.flush()

    def run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                if not self._queue:
                    return
                wait = self._queue[0].at - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                item = heapq.heappop(self._queue)
            self._send(item)

    def _send(self, item: _Due) -> None:
        feedback = item.feedback
        self.sent.setdefault(item.lead_id, []).append(item.event_id)
        self.event_ids.add(item.event_id)  # before the call: its transition names it
        self.client.track(
            user_id=item.lead_id,
            event=TRACK_NAMES[feedback.type],
            properties=feedback.properties,
            message_id=item.event_id,
        )
        if self.say:
            print(f"  SALES    {item.lead_id}  {describe(feedback)}", flush=True)


def describe(feedback: Feedback) -> str:
    """One feedback event as the demo prints it."""
    props = feedback.properties
    if feedback.type == SALES_REJECTED:
        return f"rejected ({props['reason']}: {props['note']})"
    if feedback.type == QUALIFICATION:
        met = [name for name, status in props["criteria"].items() if status == "met"]
        of = len(FRAMEWORK_CRITERIA[Framework(props["framework"])])
        return f"{props['framework'].upper()} qualification: {len(met)} of {of} met"
    if feedback.type == SALES_QUALIFIED:
        return "qualified (SQL)"
    return "accepted"
