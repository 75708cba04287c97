"""``starburst doctor``: check everything a Fargate run needs; say how to fix what fails."""

from __future__ import annotations

import click

from ._common import aws_errors, echo_json, json_option, region_option, table

__all__ = ["doctor"]


@click.command(short_help="Check credentials, region, resources, quota, clock, uv.")
@region_option
@json_option
def doctor(region: str | None, as_json: bool) -> None:
    """Run every check and report each (pass, FAIL with the fix, or skip when a check it
    needs failed); exit 1 when any did not pass."""
    with aws_errors():
        from ..admin.doctor import run_checks
        checks = run_checks(region)
    if as_json:
        echo_json({"ok": all(c.ok for c in checks), "checks": [c.to_json() for c in checks]})
    else:
        table("starburst doctor", ["check", "result", "detail", "fix"],
              [[c.name, "pass" if c.ok else "skip" if c.skipped else "FAIL", c.detail, c.fix]
               for c in checks])
    if not all(c.ok for c in checks):
        raise SystemExit(1)
