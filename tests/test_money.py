"""Money is printed with enough digits everywhere (issue #17, defect 12):
a non-zero amount never reads ``$0.00``."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

import starburst
from starburst.cost import CostReport, format_money
from starburst.scheduler import OverBudget


@pytest.mark.parametrize(("amount", "text"), [
    (0, "$0.00"), (0.002, "$0.002"), (0.0001, "$0.0001"), (0.00724, "$0.0072"),
    (0.4249, "$0.42"), (0.1, "$0.10"), (0.9999, "$1.00"), (1, "$1.00"),
    (12_345.6, "$12,345.60"), (-0.003, "-$0.003"),
])
def test_format_money(amount: float, text: str) -> None:
    assert format_money(amount) == text


@given(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False))
def test_a_non_zero_amount_never_reads_as_zero_and_keeps_two_significant_digits(
        amount: float) -> None:
    text = format_money(amount)
    assert re.fullmatch(r"\$[\d,]+\.\d{2,}", text), text
    assert float(text[1:].replace(",", "")) > 0
    shown = float(text[1:].replace(",", ""))
    assert abs(shown - amount) <= max(0.005, amount * 0.05)  # 2 significant digits or cents


def test_a_small_cap_message_shows_its_digits(fast_settings: starburst.Settings,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # The message of an OverBudget action, as the client prints it and fails tasks with.
    with starburst.Executor(workers=1, progress=False, settings=fast_settings) as ex:
        ex._client._over_budget(OverBudget((), 0.0012, 0.0003, 0.002))
    err = capsys.readouterr().err
    assert "max_cost=$0.002 reached: $0.0012 committed so far and $0.0003 projected" in err
    assert "$0.00 " not in err


def test_a_cost_report_of_a_cheap_run_shows_its_digits() -> None:
    report = CostReport(backend="fargate", workers=1, hourly_rate=0.0494,
                        estimated_hourly=0.0494, spent=0.00082, computed=0.00082,
                        worker_seconds=60, finished=True)
    assert str(report).startswith("$0.00082 final")
    assert "$0.0494/h each" in str(report)
