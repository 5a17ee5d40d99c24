"""A claimed task (`Delivery`) and a dead-letter entry (`DeadEntry`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from qtasks.schemas.envelope import Envelope


@dataclass(slots=True)
class Delivery:
    """A claimed task: its envelope and the lease that lets one worker finish it.

    `recoveries` counts the leases on it that lapsed before (its worker died or stalled): a
    task with any is a suspect, run one at a time per worker with its start made durable."""

    envelope: Envelope
    token: str
    worker_id: str
    claimed_at: float = field(default_factory=time.time)
    recoveries: int = 0


@dataclass(slots=True)
class DeadEntry:
    uuid: str
    reason: str
    sample: str
    at: float
    task_name: str | None = None
