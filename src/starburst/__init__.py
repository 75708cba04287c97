"""starburst: burst a Python parallel workload to AWS Fargate by changing one line.

>>> import starburst
>>> with starburst.Executor() as ex:            # local worker processes
...     squares = list(ex.map(pow, range(5), [2] * 5))
>>> squares
[0, 1, 4, 9, 16]

``Executor(backend="fargate", workers=100, cpu=4, memory="8GB")`` runs the
same code on ECS Fargate tasks.
"""

from __future__ import annotations

from ._version import __version__
from .api import current_plan, map, plan, submit
from .attach import Attached, attach
from .cost import CostReport
from .exceptions import (
    BackendError,
    BudgetExceededError,
    CloudError,
    ConfigurationError,
    ExecutorBroken,
    InitializerError,
    ProtocolError,
    RemoteTraceback,
    SerializationError,
    StarburstError,
    TaskError,
    TaskTimeoutError,
    TransportError,
    VersionMismatchError,
    WorkerLostError,
)
from .executor import Executor, Status
from .seeding import task_rng
from .settings import Settings

__all__ = [
    "Attached",
    "BackendError",
    "BudgetExceededError",
    "CloudError",
    "ConfigurationError",
    "CostReport",
    "Executor",
    "ExecutorBroken",
    "InitializerError",
    "ProtocolError",
    "RemoteTraceback",
    "SerializationError",
    "Settings",
    "StarburstError",
    "Status",
    "TaskError",
    "TaskTimeoutError",
    "TransportError",
    "VersionMismatchError",
    "WorkerLostError",
    "__version__",
    "attach",
    "current_plan",
    "map",
    "plan",
    "submit",
    "task_rng",
]
