"""A local backend that bills like a cloud one, to test cost and budgets for real."""

from __future__ import annotations

import dataclasses
from typing import Any

from starburst.backends.base import Session
from starburst.backends.local import LocalBackend
from starburst.scheduling.events import SPOT_INTERRUPTION, WorkerExit

#: $36 per worker-hour = one cent per worker-second: easy arithmetic in tests.
RATE = 36.0


class BilledLocalBackend(LocalBackend):
    name = "billed"
    bills_idle = True

    @classmethod
    def open_session(cls, **kw: Any) -> Session:
        session = super().open_session(**kw)
        session.hourly_rate = RATE
        session.price_note = "test rate"
        return session


class ReclaimedLocalBackend(LocalBackend):
    """Local workers whose every exit reads as a Fargate Spot interruption."""

    name = "reclaimed"

    def poll(self) -> list[WorkerExit]:
        return [dataclasses.replace(ex, stop_code=SPOT_INTERRUPTION) for ex in super().poll()]
