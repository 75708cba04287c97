"""The task process: the worker's long-lived child that pulls, runs and reports.

``python -m starburst.worker`` is a supervisor (:mod:`.supervisor`); the
tasks run in this child, which is the :class:`~starburst.worker.loop.Worker`
loop minus what must not depend on the task's interpreter: the lease
extensions, the client and parent watches and the timeout clock stay in
the supervisor. The child tells its supervisor, one way and never waiting
for an answer, so the common path costs nothing in latency::

    child --("lease", receipt, chunk, attempt, timeout, received)--> supervisor  (pipe)
    child --("body", task message)     [timed, drainable or retiring chunks]
    child --("begin", task id, t) / ("one", task id, frame)
              [timed, drainable or retiring chunks: what a kill must not lose]
    child --("progress", tasks done)   [heartbeat thread, at most once a second]
    child --("free", chunk)            [reported or released]
    child --("exit", "retire")         [max_tasks_per_child reached]
    supervisor --Resume(...)--> fresh child   [finish a killed child's chunk]

Started as ``python -c "...child.main()" IN OUT`` (the two pipe
descriptors) with the worker's environment, in the worker's process group.
"""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Serve as the task process on the two pipe descriptors; return the exit code."""
    from ..exceptions import StarburstError
    from ..settings import Settings
    from ..transport import open_transport
    from ..wire.auth import key_from_env
    from .__main__ import load_code
    from .loop import Worker

    args = sys.argv[1:] if argv is None else argv
    inbox = Connection(int(args[0]), writable=False)
    outbox = Connection(int(args[1]), readable=False)
    try:
        key = key_from_env()
        transport = open_transport(os.environ["STARBURST_TRANSPORT"])
        load_code(transport)
        worker = Worker(transport, session=os.environ["STARBURST_SESSION"], key=key,
                        worker_id=os.environ.get("STARBURST_WORKER_ID") or None,
                        settings=Settings.from_env(),
                        detached=os.environ.get("STARBURST_DETACHED") == "1",
                        link=(inbox, outbox))
        return worker.run()
    except StarburstError as exc:
        print(f"starburst worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
