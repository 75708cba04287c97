"""``starburst.attach(session_id)``: take over a session from another process.

Works for a detached session (``Executor(detached=True)``) and for one
whose client crashed, while its data exists. The new client reads the
session record and chunk manifests from the store, collects every result
already committed there, then does the client's job for the rest:
heartbeat, result notices, replacing lost workers, cost.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Any

from .client import Client
from .cost import CostReport
from .executor import Status
from .options import ExecutorOptions
from .settings import Settings

__all__ = ["Attached", "attach"]


class Attached:
    """A session taken over by this process. Use as a context manager, or call close().

    ``results()`` returns every task's result in task order (the order they
    were submitted or mapped); ``as_completed()`` yields futures as they
    finish; ``cancel()`` stops the session and deletes its data.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._futures = dict(sorted(client.attached_futures.items()))

    @property
    def session_id(self) -> str:
        """The session's id."""
        return self._client.session_id

    @property
    def futures(self) -> dict[int, Future[Any]]:
        """One future per recorded task, by task id."""
        return dict(self._futures)

    def status(self) -> Status:
        """Workers, chunks and tasks of the session, as :meth:`Executor.status`."""
        return Status(**self._client.status())

    def cost(self) -> CostReport:
        """The session's cost as seen by this client."""
        return self._client.cost()

    def results(self, timeout: float | None = None, *,
                return_exceptions: bool = False) -> list[Any]:
        """Every result in task order; waits for those still running.

        Raises the first failed task's exception, unless ``return_exceptions``.
        """
        _done, pending = concurrent.futures.wait(self._futures.values(), timeout=timeout)
        if pending:
            raise TimeoutError(f"{len(pending)} tasks of session {self.session_id} did not "
                               f"finish within {timeout} s")
        out: list[Any] = []
        for future in self._futures.values():
            if return_exceptions and future.exception() is not None:
                out.append(future.exception())
            else:
                out.append(future.result())
        return out

    def as_completed(self, timeout: float | None = None) -> Iterator[Future[Any]]:
        """The futures of the session's tasks as they finish."""
        return concurrent.futures.as_completed(self._futures.values(), timeout=timeout)

    def cancel(self) -> None:
        """Stop the session: cancel what has not run, stop workers, delete its data."""
        self._client.abort(KeyboardInterrupt())

    def close(self) -> None:
        """Wait for the remaining work, then stop workers and delete the session's data."""
        self._client.close(wait=True, cancel_futures=False)

    def __enter__(self) -> Attached:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and not isinstance(exc, Exception):
            self.cancel()
        else:
            self.close()


def attach(session_id: str, *, backend: str = "local", progress: bool | None = None,
           settings: Settings | None = None, workers: int | None = None,
           **backend_options: Any) -> Attached:
    """Take over session ``session_id`` (detached, or whose client crashed).

    Args:
        session_id: the id from ``Executor.session_id`` or ``starburst sessions``.
        backend: the backend the session ran on.
        progress: show a progress bar (None: only on a terminal).
        settings: protocol intervals.
        workers: most workers to run for what remains (default: the session's).
        **backend_options: what the backend needs to find the session (``region``...).

    Raises:
        ConfigurationError: the session's data is gone or cannot be found.
    """
    options = ExecutorOptions.build(backend=backend, progress=progress, settings=settings,
                                    workers=workers, **backend_options)
    return Attached(Client(options, session_id, attach=True))
