"""``starburst setup`` and ``starburst teardown``: the one-time, locked-down provisioning."""

from __future__ import annotations

import json

import click

from ..cost import format_money
from ._common import aws_errors, echo_json, json_option, region_option

__all__ = ["setup", "teardown"]


def _report(plan: object, verb: str, as_json: bool) -> None:
    from ..admin.setup import SetupPlan
    assert isinstance(plan, SetupPlan)
    from ..admin.private_network import network_options
    subnets = plan.resources.get("subnets") or []
    options = network_options(workers=10, zones=max(1, len(subnets)))
    if as_json:
        echo_json({"region": plan.region, "dry_run": plan.dry_run, "changes": plan.changes,
                   "resources": plan.resources,
                   "network_options_hourly": {o.name: round(o.hourly, 4) for o in options}})
        return
    if plan.gpu is not None:
        _report_gpu(plan)
    click.echo("How workers reach AWS, per hour (10 workers; --private picks endpoints):")
    for option in options:
        click.echo(f"  {option.name:<28} {format_money(option.hourly, 3)}/h  ({option.note})")
    if not plan.changes:
        click.echo(f"starburst {verb}: no changes ({plan.region}, bucket {plan.bucket}).")
        return
    head = "would make" if plan.dry_run else "made"
    click.echo(f"starburst {verb} {head} {len(plan.changes)} change(s) in {plan.region}:")
    for change in plan.changes:
        click.echo(f"  - {change}")


def _report_gpu(plan: object) -> None:
    """The GPU queue, its instance price (source, date) and why idle costs nothing."""
    from ..admin.setup import SetupPlan
    from ..aws.batch import resource_name
    from ..exceptions import ConfigurationError
    from ..gpu import instance_price
    from ..pricing_cache import gpu_table_in_use
    assert isinstance(plan, SetupPlan)
    assert plan.gpu is not None
    instance = plan.gpu
    try:
        price = instance_price(instance.instance_type, plan.region, spot=plan.spot,
                               table=gpu_table_in_use())
        rate = (f"${price.hourly:.4g}/h per instance ({price.source}, recorded "
                f"{price.recorded})")
    except ConfigurationError as exc:
        rate = f"no recorded price ({exc})"
    click.echo(f"GPU workers: AWS Batch job queue "
               f"{resource_name(instance.instance_type, spot=plan.spot)} on "
               f"{instance.instance_type} ({'Spot' if plan.spot else 'On-Demand'}, "
               f"{instance.gpus} x {instance.gpu}), {rate}.")
    click.echo("  The compute environment keeps 0 vCPU minimum: no instance runs, and "
               "nothing bills, while no job is queued.")


@click.command(short_help="Create the AWS resources starburst needs, locked down (once).")
@region_option
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--kms-key", default=None, help="Encrypt the bucket with this KMS key "
                                              "(default: SSE-S3).")
@click.option("--print-policy", is_flag=True,
              help="Print the minimal IAM policy your own identity needs (with --gpu: for "
                   "GPU sessions too), and exit.")
@click.option("--private", is_flag=True,
              help="No public IPs: create VPC endpoints (S3 gateway; SQS, ECR, Logs, STS "
                   "interface) so workers need no NAT gateway.")
@click.option("--gpu", default=None, metavar="NAME",
              help="Also create the AWS Batch resources of GPU workers for this GPU "
                   "(e.g. nvidia-t4): instance profile, compute environment, job queue.")
@click.option("--instance-type", default=None, metavar="TYPE",
              help="With --gpu: the EC2 instance type (default: the GPU's smallest).")
@click.option("--spot", is_flag=True, help="With --gpu: an EC2 Spot compute environment.")
@json_option
def setup(region: str | None, dry_run: bool, yes: bool, kms_key: str | None,
          print_policy: bool, private: bool, gpu: str | None, instance_type: str | None,
          spot: bool, as_json: bool) -> None:
    """Create (or bring up to date) the bucket, access-log bucket, ECR repository,
    ECS cluster, IAM roles, log group and security group, all tagged
    starburst:managed, and write the config file. With --gpu, also the AWS
    Batch compute environment (0 vCPU minimum: nothing bills while idle), job
    queue and job definition of GPU workers. Safe to run again: a second run
    reports no changes. See docs/security.md."""
    with aws_errors():
        from ..admin.setup import new_plan, run_setup
        from ..aws import policies
        from ..aws.clients import resolve_region
        name = resolve_region(region)
        plan = new_plan(region=name, kms_key=kms_key, dry_run=True, private=private, gpu=gpu,
                        instance_type=instance_type, spot=spot)
        if print_policy:
            click.echo(json.dumps(policies.user_policy(
                part=plan.part, region=name, account=plan.account, bucket=plan.bucket,
                prefix=plan.prefix, cluster=plan.cluster, repository=plan.repository,
                log_group=plan.log_group, gpu=plan.gpu is not None, kms_key=plan.kms_key),
                indent=2))
            return
        run_setup(plan)
        if dry_run or not plan.changes:
            _report(plan, "setup", as_json)
            return
        if not yes and not as_json:
            _report(plan, "setup", False)
            click.confirm("Apply these changes?", abort=True)
        applied = run_setup(new_plan(region=name, kms_key=kms_key, private=private, gpu=gpu,
                                     instance_type=instance_type, spot=spot))
        _report(applied, "setup", as_json)


@click.command(short_help="Delete what `starburst setup` created.")
@region_option
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
def teardown(region: str | None, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Stop starburst tasks and GPU jobs; delete the AWS Batch queues and compute
    environments, the buckets (with their data), ECR repository, cluster, log
    group, roles and security group; remove their keys from the config file."""
    with aws_errors():
        from ..admin.setup import new_plan
        from ..admin.teardown import run_teardown
        from ..aws.clients import resolve_region
        name = resolve_region(region)
        plan = run_teardown(new_plan(region=name, dry_run=True))
        if dry_run or not plan.changes:
            _report(plan, "teardown", as_json)
            return
        if not yes:
            _report(plan, "teardown", False)
            click.confirm("Delete all of this (run data included)?", abort=True)
        _report(run_teardown(new_plan(region=name)), "teardown", as_json)
