"""``starburst quota``: the Fargate vCPU quota, what runs, how many workers fit; increases."""

from __future__ import annotations

from typing import Any

import click

from ..aws.sizes import FARGATE_SIZES
from ..exceptions import StarburstError
from ..quota import suggest_quota
from ._common import aws_errors, echo_json, json_option

__all__ = ["quota"]


@click.command(short_help="Fargate vCPU quota, vCPUs in use, workers that fit; increases.")
@click.option("--region", default=None,
              help="AWS region.  [default: STARBURST_REGION, AWS_REGION, the AWS profile's]")
@click.option("--cpu", type=float, default=1.0, show_default=True,
              help="vCPUs per worker (0.25, 0.5, 1, 2, 4, 8, 16).")
@click.option("--workers", type=click.IntRange(min=1), default=10, show_default=True,
              help="Workers you want to run at once.")
@click.option("--spot", is_flag=True, help="The Fargate Spot quota (L-36FBB829) instead of "
                                           "On-Demand (L-3032A538).")
@click.option("--request", "request", type=float, is_flag=False, flag_value=0.0, default=None,
              metavar="[VCPUS]",
              help="Ask AWS to raise the quota to VCPUS (alone: enough for --workers x --cpu "
                   "plus what runs, rounded up to 50).")
@click.option("--gpu", default=None, metavar="NAME",
              help="GPU workers (e.g. nvidia-t4): the EC2 GPU instance vCPU quota instead "
                   "(one worker per GPU).")
@click.option("--instance-type", default=None, metavar="TYPE",
              help="With --gpu: the EC2 instance type (default: the GPU's smallest).")
@json_option
def quota(region: str | None, cpu: float, workers: int, spot: bool, request: float | None,
          gpu: str | None, instance_type: str | None, as_json: bool) -> None:
    """Read the Fargate vCPU quota and the vCPUs in use; say how many workers fit.

    The quota comes from Service Quotas (service fargate, L-3032A538
    On-Demand, L-36FBB829 Spot), the vCPUs in use from the Fargate tasks
    running in every ECS cluster of the region. With --gpu, the EC2 quota of
    the GPU instance family instead (service ec2: G and VT, or P instances;
    On-Demand or Spot) and the vCPUs of that family's running instances.
    With --request, submits a quota increase (RequestServiceQuotaIncrease).
    Open increase requests are listed with their status either way.
    """
    if instance_type is not None and gpu is None:
        raise click.BadParameter("--instance-type goes with --gpu", param_hint="--instance-type")
    if gpu is not None:
        _gpu_quota(region, gpu, instance_type, workers, spot, request, as_json)
        return
    if cpu not in FARGATE_SIZES:
        raise click.BadParameter(
            f"{cpu:g} is not a Fargate size; choose one of "
            f"{', '.join(f'{c:g}' for c in FARGATE_SIZES)}", param_hint="--cpu")
    try:
        from ..aws import quota as aws_quota
        from ..aws.clients import resolve_region
    except ImportError as exc:
        raise click.ClickException(f"`starburst quota` needs the aws extra ({exc}): "
                                   "pip install 'starburst-cloud[aws]'") from exc
    out: dict[str, Any] = {}
    lines: list[str] = []
    try:
        region = resolve_region(region)
        clients = aws_quota.QuotaClients.create(None, region)
        status = aws_quota.read_plan(workers, cpu, clients, region, spot=spot)
        kind = "Spot" if spot else "On-Demand"
        code = aws_quota.quota_code(spot)
        plan = status.plan
        out.update(region=region, capacity=kind, quota_code=code,
                   quota_vcpu=status.quota_vcpu, quota_source=status.read_from,
                   in_use_vcpu=status.in_use_vcpu,
                   workers_requested=workers, cpu=cpu, workers_fit=plan.workers,
                   waves=plan.waves, message=plan.message())
        source = ("" if status.read_from == aws_quota.READ_FROM_SERVICE_QUOTAS
                  else f" ({status.read_from})")
        if status.quota_vcpu is None:
            lines.append(f"Fargate {kind} vCPU quota in {region} ({code}): unknown (no "
                         "permission to read Service Quotas).")
        else:
            lines.append(f"Fargate {kind} vCPU quota in {region} ({code}): "
                         f"{status.quota_vcpu:g} vCPU{source}; in use: "
                         f"{status.in_use_vcpu:g} vCPU.")
        if status.in_use_note:
            lines.append(status.in_use_note)
            out["in_use_note"] = status.in_use_note
        lines.append(plan.message() or
                     f"{workers} workers of {cpu:g} vCPU fit ({workers * cpu:g} vCPU of "
                     f"{max(0.0, (status.quota_vcpu or 0) - status.in_use_vcpu):g} free).")
        wanted = suggest_quota(workers, cpu, status.in_use_vcpu)
        out["suggested_quota_vcpu"] = wanted
        if request is None and plan.limited:
            lines.append(f"To run {workers} workers at once, ask for {wanted} vCPU: "
                         f"starburst quota --region {region} --cpu {cpu:g} --workers {workers}"
                         f"{' --spot' if spot else ''} --request")
        if request is None and status.read_from != aws_quota.READ_FROM_SERVICE_QUOTAS:
            # The quota was not read from AWS, so neither are its requests (an
            # emulator has no Service Quotas for Fargate; `--request` still asks).
            out["requests"] = []
            lines.append(f"Increase requests not listed: the quota comes from "
                         f"{status.read_from} (unset it to read Service Quotas).")
        else:
            _requests(out, lines, request, float(wanted), status.quota_vcpu, clients, region,
                      spot=spot, what=f"{kind} vCPU quota")
    except StarburstError as exc:
        raise click.ClickException(str(exc)) from exc
    _print(out, lines, as_json)


def _print(out: dict[str, Any], lines: list[str], as_json: bool) -> None:
    if as_json:
        echo_json(out)
    else:
        for line in lines:
            click.echo(line)


def _requests(out: dict[str, Any], lines: list[str], request: float | None, wanted: float,
              current: float | None, clients: Any, region: str, *, spot: bool = False,
              quota: tuple[str, str] | None = None, what: str) -> None:
    """Submit the increase ``request`` asks for (``--request``), then list the requests.

    ``request`` is None (no request), 0 (ask for ``wanted``) or the vCPUs.
    ``quota`` is ``(service code, quota code)`` for a quota other than Fargate's.
    """
    from ..aws import quota as aws_quota

    if request is not None:
        desired = request or wanted
        if current is not None and desired <= current:
            raise click.ClickException(
                f"the quota is already {current:g} vCPU; ask for more than that")
        made = aws_quota.request_increase(desired, clients, region, spot=spot, quota=quota)
        lines.append(f"Requested {what} {made.desired:g} vCPU (request {made.id}): "
                     f"{made.status}.")
        out["request"] = {"id": made.id, "desired": made.desired, "status": made.status}
    try:
        requests = aws_quota.quota_requests(clients, region, spot=spot, quota=quota)
    except StarburstError as exc:
        requests = []
        lines.append(f"Increase requests could not be listed: {exc}")
    out["requests"] = [{"id": r.id, "desired": r.desired, "status": r.status,
                        "open": r.open, "case_id": r.case_id,
                        "created": r.created.isoformat() if r.created else None}
                       for r in requests]
    for r in [r for r in requests if r.open] or requests[:1]:
        when = f", {r.created:%Y-%m-%d}" if r.created else ""
        case = f", support case {r.case_id}" if r.case_id else ""
        lines.append(f"{'Open' if r.open else 'Latest'} increase request {r.id}: "
                     f"{r.desired:g} vCPU, {r.status}{when}{case}.")
    if not requests:
        lines.append("No increase requests for this quota.")


def _gpu_quota(region: str | None, gpu: str, instance_type: str | None, workers: int,
               spot: bool, request: float | None, as_json: bool) -> None:
    """``starburst quota --gpu``: the EC2 GPU quota, the family's vCPUs in use, what fits."""
    out: dict[str, Any] = {}
    lines: list[str] = []
    with aws_errors():
        from ..aws.clients import resolve_region
        from ..aws.gpu_quota import SERVICE_CODE, read_gpu_plan
        from ..gpu import resolve_gpu

        instance = resolve_gpu(gpu, instance_type)
        region = resolve_region(region)
        wanted = -(-workers // instance.gpus)  # instances: one worker per GPU
        status = read_gpu_plan(instance, wanted, None, region, spot=spot)
        plan, kind = status.plan, "Spot" if spot else "On-Demand"
        out.update(region=region, capacity=kind, gpu=instance.gpu,
                   instance_type=instance.instance_type, quota_code=status.quota_code,
                   quota_name=status.quota_name, read_from=status.read_from,
                   quota_vcpu=plan.quota_vcpu, in_use_vcpu=plan.in_use_vcpu,
                   workers_requested=workers, instances_requested=wanted,
                   instances_fit=status.instances, workers_fit=status.instances * instance.gpus,
                   waves=plan.waves, suggested_quota_vcpu=status.suggested_quota(),
                   message=status.message())
        where = f"EC2 quota '{status.quota_name}' ({status.quota_code}) in {region}"
        if plan.quota_vcpu is None:
            lines.append(f"{where}: unknown (no permission to read Service Quotas).")
        else:
            lines.append(f"{where}: {plan.quota_vcpu:g} vCPU ({status.read_from}); in use by "
                         f"{kind} {instance.family} instances: {plan.in_use_vcpu:g} vCPU.")
        if status.in_use_note:
            lines.append(status.in_use_note)
        lines.append(status.message() or
                     f"{wanted} {instance.instance_type} ({instance.vcpus} vCPU, "
                     f"{instance.gpus} x {instance.gpu} each) fit: {workers} GPU workers.")
        _requests(out, lines, request, float(status.suggested_quota()), plan.quota_vcpu, None,
                  region, quota=(SERVICE_CODE, status.quota_code),
                  what=f"'{status.quota_name}'")
    _print(out, lines, as_json)
