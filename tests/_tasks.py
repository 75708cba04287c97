"""Task functions the core tests run on workers.

They live in a module of their own, importing only the standard library, so
a worker that unpickles one (by reference) imports this small module and
not a test module with pytest behind it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path


def double(x):
    return 2 * x


def add(x, y):
    return x + y


def add3(x, y, z=0):
    return x + y + z


def identity(x):
    return x


def nap(seconds):
    time.sleep(seconds)
    return seconds


def write_marker(directory, name, value=None):
    """Leave a file named ``name`` holding this worker's pid; return ``name``."""
    Path(directory, str(name)).write_text(str(os.getpid()))
    return name if value is None else value


def marked_nap(directory, name, seconds):
    """Write a start marker, then sleep: lets a test act while the task runs."""
    Path(directory, f"start-{name}").write_text(str(os.getpid()))
    time.sleep(seconds)
    return name


def sleep_if_one(x):
    if x == 1:
        time.sleep(60)
    return x


def stuck_in_native_code(x, directory):
    """For ``x == 0``, ignore the timeout alarm as a task stuck in C code would.

    SIGALRM is blocked in the main thread, so the timeout signal goes to
    another thread and the sleeping main thread is never interrupted.
    """
    Path(directory, f"start-{x}").write_text(str(os.getpid()))
    if x == 0:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            time.sleep(30)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return x * 10


def greet(x):
    print(f"hello from task {x}", flush=True)
    return x + 1


def chatty(x):
    print(f"hello from stdout {x}")
    print(f"hello from stderr {x}", file=sys.stderr)
    return x


# -- crashes --------------------------------------------------------------------


def exit_process(code):
    os._exit(code)


def kill_self(sig=signal.SIGKILL):
    os.kill(os.getpid(), sig)
    time.sleep(30)  # pragma: no cover - the signal ends the process first


def segfault():
    ctypes.string_at(0)


def call_sys_exit(code):
    sys.exit(code)


def raise_keyboard_interrupt():
    raise KeyboardInterrupt


def return_lock():
    return threading.Lock()


def return_generator():
    return (i for i in range(3))


def crash_if(x, bad):
    if x == bad:
        os._exit(3)
    return x


def _raise_key_error(name):
    raise KeyError(name)


class FailsToUnpickle:
    """An argument whose unpickling raises ``KeyError`` (not a missing store key)."""

    def __reduce__(self):
        return (_raise_key_error, ("no-such-column",))


def spawn_sleeper(directory, name):
    """Start ``sleep 60`` as a child of the task's process and return its pid
    (also left in ``directory/name``): a task that leaves a process behind."""
    import subprocess

    proc = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.returncode = 0  # the task does not wait for it; no ResourceWarning when dropped
    Path(directory, str(name)).write_text(str(proc.pid))
    return proc.pid


def nap_with_sleeper(directory, name, seconds):
    """Leave a ``sleep 60`` child (pid in ``directory/child-name``), write a start
    marker, then sleep ``seconds``."""
    spawn_sleeper(directory, f"child-{name}")
    return marked_nap(directory, name, seconds)


_INITIALIZED: list[object] = []


def remember_init(directory, tag):
    """An initializer: note ``tag`` in this process and leave a marker file per process."""
    _INITIALIZED.append(tag)
    Path(directory, f"init-{os.getpid()}").write_text(str(tag))


def initialized(x):
    """What the initializer left in this process, and the process id."""
    return list(_INITIALIZED), os.getpid()


def failing_init():
    raise FileNotFoundError("settings.toml")


def hold_gil_if_zero(x):
    """For ``x == 0``, hold the GIL in C code for minutes (no alarm can stop it)."""
    if x == 0:
        return sum(range(10**12))
    return x * 10


def counted_nap(directory, name, seconds):
    """Leave one new file per run of task ``name`` (``run-<name>-<pid>-<n>``), then
    sleep: a test counts the files to prove how often each task ran."""
    runs = len(list(Path(directory).glob(f"run-{name}-*")))
    Path(directory, f"run-{name}-{os.getpid()}-{runs}-{time.monotonic_ns()}").touch()
    time.sleep(seconds)
    return name
