"""A local backend that bills like a cloud one, to test cost and budgets for real."""

from __future__ import annotations

from typing import Any

from starburst.backends.base import Session
from starburst.backends.local import LocalBackend

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
