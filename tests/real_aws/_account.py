"""The account of a real-AWS test (:class:`Account`), real or emulated; see ``conftest.py``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner

import starburst
from starburst.aws.clients import client
from starburst.cli import main
from starburst.testing import EmulatedAws

__all__ = ["DEVELOPER_ENV", "EMULATED_SETTINGS", "PREFIXES", "REAL_SETUP_ENV", "Account"]

PREFIXES = ("AWS_", "STARBURST_")
#: The developer's AWS_* and STARBURST_* as pytest found them, before any test
#: (or an emulator, whose variables stay in the process) changed them.
DEVELOPER_ENV = {k: v for k, v in os.environ.items() if k.startswith(PREFIXES)}
#: Lets the tests run `starburst setup --yes` on a real account.
REAL_SETUP_ENV = "STARBURST_TEST_REAL_SETUP"
#: Short intervals on the emulator, so a session ends in seconds; a real
#: account keeps the defaults a user gets.
EMULATED_SETTINGS = starburst.Settings(poll=0.05, lease=4.0, heartbeat=1.0,
                                        client_heartbeat=1.0, idle_timeout=30)


@dataclass
class Account:
    """The AWS account of one real-AWS test.

    Attributes:
        aws: the emulated AWS, or None on a real account.
        options: the Executor options of this mode (the emulator's short intervals).
    """

    aws: EmulatedAws | None
    monkeypatch: pytest.MonkeyPatch
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def real(self) -> bool:
        """Whether this is the developer's own account."""
        return self.aws is None

    @property
    def emulated(self) -> EmulatedAws:
        """The emulated AWS (only on the emulator)."""
        assert self.aws is not None, "a real account has no emulator"
        return self.aws

    @contextlib.contextmanager
    def serves(self, *counters: str) -> Iterator[None]:
        """Inside the block, the AWS behaviour each :class:`StrictRules` counter names was met.

        On the emulator each counter must move (a rule whose window the code
        slept through, or never reached, proves nothing). A real account
        serves the behaviour or not, unseen: nothing is asserted.
        """
        rules = None if self.aws is None else self.aws.rules
        before = {name: getattr(rules, name) for name in counters} if rules else {}
        yield
        if rules is not None:
            unserved = [name for name in counters if getattr(rules, name) == before[name]]
            assert not unserved, f"the emulator never served {unserved}: the test proved nothing"

    def setup(self) -> str:
        """Run ``starburst setup`` and return its output; it must succeed.

        On the emulator, and on a real account with ``STARBURST_TEST_REAL_SETUP=1``
        (a fresh or spare account): ``--yes``, as the identity in use. Otherwise
        ``--dry-run``: the developer set the account up, and setup run again
        would rewrite the bucket policy's writers to this identity and the
        bucket's encryption to what the flags say.
        """
        applies = not self.real or os.environ.get(REAL_SETUP_ENV) == "1"
        result = CliRunner().invoke(main, ["setup", "--yes" if applies else "--dry-run"])
        assert result.exit_code == 0, result.output
        return result.output

    def roles_propagate_in(self, seconds: float) -> None:
        """Emulator: the IAM roles that exist now are new to ECS for ``seconds`` more.

        ECS refuses them until then, as it refuses a role IAM has not
        propagated yet, and refuses a role created later as long after its
        creation (:class:`~starburst.testing.StrictRules`).
        """
        from moto.backends import get_backend
        from moto.core.utils import utcnow

        account = client("sts").get_caller_identity()["Account"]
        for role in list(get_backend("iam")[account]["global"].roles.values()):
            role.create_date = utcnow()  # as moto stamps a role it creates
        self.monkeypatch.setattr(self.emulated.rules, "iam_propagation_s", seconds)
