"""Module-level task functions for the ecosystem tests (importable by workers)."""

from __future__ import annotations

import logging
import random

import numpy as np

import starburst


def draw(i: int) -> tuple[float, float, float]:
    """Three draws: the stdlib, numpy's global generator and task_rng()."""
    return random.random(), float(np.random.rand()), float(starburst.task_rng().random())


def log_and_return(i: int) -> int:
    logging.getLogger("starburst.test.task").warning("task says %d", i)
    logging.getLogger("starburst.test.task").debug("too quiet %d", i)
    return i


def fail_on_two(i: int) -> int:
    if i == 2:
        raise KeyError(f"bad item {i}")
    return i * 10
