"""Workload tasks on pandas DataFrames: groupby-apply, assignment in place.

A module of their own (as ``tests/_tasks.py``), one per dependency: a
worker unpickles a task by reference and imports only its small module
(never pandas or scipy for a task that needs neither, never a test
module with pytest behind it). Each test also calls them serially, in its
own process, for the result they must match.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

# -- groupby-apply and assignment ----------------------------------------------


def summarise_group(item: tuple[Any, pd.DataFrame]) -> tuple[Any, float, float, float, int]:
    """A group's key, the sum, mean and standard deviation of ``v``, its row count."""
    key, group = item
    values = group["v"]
    return key, float(values.sum()), float(values.mean()), float(values.std()), len(group)


def stamp(df: pd.DataFrame) -> pd.DataFrame:
    """Overwrite the first value of ``v`` and add a column: a DataFrame changed in place."""
    df.loc[df.index[0], "v"] = 99.0
    df["w"] = df["v"] * 2
    return df
