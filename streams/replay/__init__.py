"""Replaying the events topic in memory: what a model would have decided, writing nothing.

`run` holds the replay of one or more models over batches of records (the
worker's own `Processor` over a `MemoryLeadStore`), `history` reads the
events topic without a consumer group, `compare` is the pure arithmetic of
two runs side by side, `whatif` puts them together for
`leadpulse model whatif`. `leadpulse model apply` and bench/quality build on
`run`.
"""

from leadpulse.streams.replay.compare import Comparison, as_json, compare
from leadpulse.streams.replay.history import History, ReplayError, batches, open_history
from leadpulse.streams.replay.run import (
    OUTCOMES,
    HandoffMade,
    Replayer,
    RunResult,
    per_partition,
    replay_models,
    replay_records,
)
from leadpulse.streams.replay.whatif import WhatIf, run_whatif

__all__ = [
    "OUTCOMES",
    "Comparison",
    "HandoffMade",
    "History",
    "ReplayError",
    "Replayer",
    "RunResult",
    "WhatIf",
    "as_json",
    "batches",
    "compare",
    "open_history",
    "per_partition",
    "replay_models",
    "replay_records",
    "run_whatif",
]
