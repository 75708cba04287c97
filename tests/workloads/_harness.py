"""What every workload test shares: a backend to run on, leak checks, exact comparison.

A workload is a program a user would write; the suite runs it on
starburst and serially, in this process, and requires the two to agree
bit for bit (:func:`differences`), as ``ProcessPoolExecutor`` would. After
every ``with`` block it requires that the session left nothing behind
(:meth:`Workload.assert_nothing_left`): no worker process, and on the
emulated AWS no queue and no stored object of the session.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from _support import kill_all, session_processes, wait_for

import starburst

#: How long workers may take to exit after ``shutdown()`` returns: the local
#: backend sends SIGTERM and waits 5 s before SIGKILL; the rest is slack for
#: a loaded 2-core machine.
EXIT_TIMEOUT = 15.0


class Workload:
    """A backend the workloads run on, and the checks every run ends with.

    Attributes:
        backend: ``"local"`` or ``"fargate"`` (on the emulated AWS).
        settings: the protocol intervals every executor here uses.
    """

    def __init__(self, backend: str, *, settings: starburst.Settings) -> None:
        self.backend = backend
        self.settings = settings

    def options(self, **kw: Any) -> dict[str, Any]:
        """Executor options for this backend: two workers, no bar, ``kw`` on top."""
        return {"backend": self.backend, "workers": 2, "settings": self.settings,
                "progress": False, **kw}

    @contextlib.contextmanager
    def executor(self, **kw: Any) -> Iterator[starburst.Executor]:
        """``with Executor(...) as ex``, then :meth:`assert_nothing_left` for its session."""
        ex = starburst.Executor(**self.options(**kw))
        try:
            with ex:
                yield ex
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)
            kill_all(session_processes(ex.session_id))
            raise
        self.assert_nothing_left([ex.session_id])

    def assert_nothing_left(self, session_ids: Sequence[str]) -> None:
        """Fail if a worker, queue or stored object of these sessions survived them.

        By session id, not "anything at all": under pytest-xdist other suites'
        tests run in this process too, and some leave things on purpose
        (detached sessions).

        Args:
            session_ids: the sessions to check. Every process started for one
                carries ``STARBURST_SESSION=<id>`` (its workers, and their
                children, which inherit the environment).
        """
        assert session_ids, "no session to check: the work did not run on starburst"

        def leftovers() -> list[int]:
            return sorted({pid for s in session_ids for pid in session_processes(s)})

        try:
            wait_for(lambda: not leftovers(), timeout=EXIT_TIMEOUT,
                     what="every worker process to exit after the with block")
        except AssertionError:
            alive = leftovers()
            kill_all(alive)
            raise AssertionError(f"worker processes outlived the with block of "
                                 f"{list(session_ids)} on {self.backend}: {alive}") from None
        if self.backend == "fargate":
            self._assert_no_aws_leftovers(session_ids)

    def _assert_no_aws_leftovers(self, session_ids: Sequence[str]) -> None:
        from _support import SharedEmulator

        from starburst.aws.clients import client

        shared = SharedEmulator.get().shared
        bucket = shared.bucket
        # The store's keys live under the shared prefix (S3Store._key).
        root = f"{shared.prefix.strip('/')}/" if shared.prefix.strip("/") else ""
        for session in session_ids:
            queues = client("sqs").list_queues(
                QueueNamePrefix=f"starburst-{session}").get("QueueUrls", [])
            assert not queues, f"queues of session {session} left on the emulated AWS: {queues}"
            listing = client("s3").list_objects_v2(Bucket=bucket,
                                                   Prefix=f"{root}sessions/{session}/")
            keys = [o["Key"] for o in listing.get("Contents", [])]
            assert not keys, f"objects of session {session} left in s3://{bucket}: {keys[:5]}"


# -- exact comparison ---------------------------------------------------------------


def differences(got: Any, expected: Any, path: str = "result") -> list[str]:
    """Where ``got`` differs from ``expected``, bit for bit; empty when identical.

    Floats compare by their bytes (so ``-0.0 != 0.0`` and a NaN equals
    itself), arrays by dtype, shape and bytes, DataFrames and Series with
    ``check_exact=True``; containers element by element, so a report names
    each position that differs (``result[13][1]``).
    """
    if isinstance(expected, pd.DataFrame | pd.Series):
        if type(got) is not type(expected):
            return [f"{path}: {got!r} instead of a {type(expected).__name__}"]
        check = (pd.testing.assert_frame_equal if isinstance(expected, pd.DataFrame)
                 else pd.testing.assert_series_equal)
        try:
            check(got, expected, check_exact=True, check_flags=True)
        except AssertionError as exc:
            return [f"{path}: {str(exc).splitlines()[0]}"]
        return []
    if isinstance(expected, np.ndarray):
        if not isinstance(got, np.ndarray):
            return [f"{path}: {got!r} instead of an ndarray"]
        if got.dtype != expected.dtype or got.shape != expected.shape:
            return [f"{path}: {got.dtype}{got.shape} instead of {expected.dtype}{expected.shape}"]
        if expected.dtype.hasobject:
            return differences(got.tolist(), expected.tolist(), path)
        if np.ascontiguousarray(got).tobytes() != np.ascontiguousarray(expected).tobytes():
            changed = int(np.count_nonzero(got.view(np.uint8) != expected.view(np.uint8)))
            return [f"{path}: {changed} bytes differ"]
        return []
    if isinstance(expected, np.generic):
        if type(got) is not type(expected) or got.tobytes() != expected.tobytes():
            return [f"{path}: {got!r} instead of {expected!r}"]
        return []
    if isinstance(expected, float):
        if type(got) is not float or struct.pack("<d", got) != struct.pack("<d", expected):
            gap = (f" ({math.ulp(expected) and abs(got - expected) / math.ulp(expected):.0f} "
                   "ulp)" if isinstance(got, float) else "")
            return [f"{path}: {got!r} instead of {expected!r}{gap}"]
        return []
    if isinstance(expected, list | tuple):
        if type(got) is not type(expected):
            return [f"{path}: {got!r} instead of a {type(expected).__name__}"]
        if len(got) != len(expected):
            return [f"{path}: {type(got).__name__} of {len(got)} instead of "
                    f"{type(expected).__name__} of {len(expected)}"]
        found: list[str] = []
        for index, (a, b) in enumerate(zip(got, expected, strict=True)):
            found.extend(differences(a, b, f"{path}[{index}]"))
        return found
    if isinstance(expected, dict):
        if not isinstance(got, dict) or got.keys() != expected.keys():
            return [f"{path}: keys differ"]
        return [d for key in expected for d in differences(got[key], expected[key],
                                                            f"{path}[{key!r}]")]
    if type(got) is not type(expected) or got != expected:
        return [f"{path}: {got!r} instead of {expected!r}"]
    return []


def assert_identical(got: Any, expected: Any, *, what: str) -> None:
    """Fail unless identical, naming how many positions differ and the first few.

    When ``got`` is a list of results, the report counts the failed tasks
    (exceptions in place of results) apart from the results that differ.
    """
    found = differences(got, expected)
    if not found:
        return
    failed = ([r for r in got if isinstance(r, BaseException)]
              if isinstance(got, list) else [])
    failures = (f"{len(failed)} of {len(got)} tasks failed (first: {failed[0]!r}); "
                if failed else "")
    raise AssertionError(f"{what}: {failures}{len(found)} differences from the serial run, "
                         f"first {found[:5]}")
