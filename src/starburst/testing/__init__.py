"""Test helpers that ship with starburst (the ``testing`` extra).

:func:`emulated_aws` runs the whole Fargate path on this machine: a moto
server on 127.0.0.1 and an ECS task runner that runs each task as a local
worker process. Inside it, ``starburst.Executor(backend="fargate")`` works
unchanged; see :mod:`starburst.testing.emulator`.
"""

from __future__ import annotations

from .audit import Audit
from .emulator import EmulatedAws, emulated_aws
from .strict import StrictRules
from .task_runner import EcsTaskRunner

__all__ = ["Audit", "EcsTaskRunner", "EmulatedAws", "StrictRules", "emulated_aws"]
