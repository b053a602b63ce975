"""A lead's stored state as the pipeline reads it: one loader for every step that decides.

Scoring, identity merges and the sweeper all start from a snapshot; they
read its state the same way, so a state this release cannot decode is the
same `CorruptStateError` (with the lead named) wherever it is met.
"""

from __future__ import annotations

from leadpulse.scoring import LeadState, new_lead
from leadpulse.streams.errors import CorruptStateError
from leadpulse.streams.store import Snapshot, decode_state


def load_state(snap: Snapshot, known: bool) -> LeadState:
    """The snapshot's state (a new lead if none); known=True makes it a known lead."""
    if snap.state is None:
        return new_lead(snap.subject, anonymous=not known)
    try:
        state = decode_state(snap.state)
    except CorruptStateError as error:
        raise CorruptStateError(
            f"stored state of {snap.subject!r} cannot be decoded: {error.reason}",
            subject=snap.subject,
        ) from error
    except ValueError as error:
        raise CorruptStateError(
            f"stored state of {snap.subject!r} cannot be decoded: {error}",
            subject=snap.subject,
        ) from error
    if known and state.anonymous:
        state = state.model_copy(update={"anonymous": False})
    return state
