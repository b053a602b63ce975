"""How a LeadState is stored: the one place that encodes and decodes it."""

from __future__ import annotations

from scoring import LeadState


def encode_state(state: LeadState) -> bytes:
    return state.model_dump_json().encode()


def decode_state(blob: bytes) -> LeadState:
    return LeadState.model_validate_json(blob)
