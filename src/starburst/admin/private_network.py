"""``starburst setup --private``: workers without public IPs, reaching AWS through VPC endpoints.

Workers need S3, SQS, ECR (API and image layers), CloudWatch Logs and STS;
ECS Exec into a kept worker (``debug=True``) needs SSM Messages.
Without a public IP they reach them either through a NAT gateway or
through VPC endpoints; endpoints are cheaper for bursty work and keep the
traffic inside the VPC. The S3 endpoint is a gateway endpoint (free); the
others are interface endpoints, billed per endpoint per AZ per hour.

Prices (us-east-1, recorded 2026-11-28): public IPv4 $0.005/h per address
(https://aws.amazon.com/vpc/pricing/), NAT gateway $0.045/h per AZ plus
$0.045/GB processed, interface endpoint $0.01/h per AZ plus $0.01/GB
(https://aws.amazon.com/privatelink/pricing/).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..aws import provision
from ..aws.clients import client

if TYPE_CHECKING:
    from .setup import SetupPlan

__all__ = ["ENDPOINT_SECURITY_GROUP", "SERVICES", "NetworkOption", "network_options",
           "setup_endpoints"]

#: Services workers call, and the kind of endpoint each needs (ssmmessages:
#: the channels of ECS Exec, without which `aws ecs execute-command` cannot
#: reach a worker that has no public IP).
SERVICES: dict[str, str] = {
    "s3": "Gateway", "sqs": "Interface", "ecr.api": "Interface", "ecr.dkr": "Interface",
    "logs": "Interface", "sts": "Interface", "ssmmessages": "Interface",
}
#: Interface endpoints accept HTTPS from the workers' security group only.
ENDPOINT_SECURITY_GROUP = "starburst-endpoints"
IPV4_HOURLY = 0.005
NAT_HOURLY = 0.045
ENDPOINT_HOURLY = 0.01


@dataclass(frozen=True)
class NetworkOption:
    """One way for workers to reach AWS, and what it costs per hour."""

    name: str
    hourly: float
    note: str


def network_options(workers: int, zones: int) -> list[NetworkOption]:
    """The three ways, priced for ``workers`` running tasks in ``zones`` AZs."""
    interfaces = sum(1 for kind in SERVICES.values() if kind == "Interface")
    return [
        NetworkOption("public IP per task", workers * IPV4_HOURLY,
                      f"{workers} tasks x ${IPV4_HOURLY}/h, only while tasks run"),
        NetworkOption("NAT gateway", zones * NAT_HOURLY,
                      f"{zones} AZ x ${NAT_HOURLY}/h, always on, plus $0.045/GB"),
        NetworkOption("VPC endpoints (--private)", zones * interfaces * ENDPOINT_HOURLY,
                      f"{interfaces} interface endpoints x {zones} AZ x ${ENDPOINT_HOURLY}/h, "
                      "always on, plus $0.01/GB; the S3 gateway endpoint is free"),
    ]


def _endpoint_group(plan: SetupPlan, ec2: Any, vpc: str, workers_group: str) -> str | None:
    found = ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": [ENDPOINT_SECURITY_GROUP]},
        {"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    if found:
        return str(found[0]["GroupId"])
    plan.changes.append(f"create security group {ENDPOINT_SECURITY_GROUP} (HTTPS from the "
                        "workers only)")
    if plan.dry_run:
        return None
    group = ec2.create_security_group(
        GroupName=ENDPOINT_SECURITY_GROUP, VpcId=vpc,
        Description="starburst VPC endpoints: HTTPS from starburst workers",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [
            {"Key": provision.MANAGED_TAG, "Value": "true"}]}])["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
        "UserIdGroupPairs": [{"GroupId": workers_group}]}])
    return str(group)


def setup_endpoints(plan: SetupPlan, subnets: list[str], workers_group: str) -> None:
    """Create the missing VPC endpoints of the subnets' VPC (idempotent)."""
    ec2 = client("ec2", region=plan.region)
    described = ec2.describe_subnets(SubnetIds=subnets)["Subnets"]
    vpc = str(described[0]["VpcId"])
    existing = {e["ServiceName"] for e in ec2.describe_vpc_endpoints(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}])["VpcEndpoints"]
        if e.get("State", "available") not in ("deleted", "deleting", "failed")}
    missing = {svc: kind for svc, kind in SERVICES.items()
               if f"com.amazonaws.{plan.region}.{svc}" not in existing}
    if not missing:
        _restrict_egress(plan, ec2, vpc, workers_group, _find_endpoint_group(ec2, vpc),
                         skipped=[])
        return
    group = _endpoint_group(plan, ec2, vpc, workers_group)
    skipped: list[str] = []
    tables = [t["RouteTableId"] for t in ec2.describe_route_tables(Filters=[
        {"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]]
    tags: list[Any] = [{"ResourceType": "vpc-endpoint",
                        "Tags": [{"Key": provision.MANAGED_TAG, "Value": "true"}]}]
    zone_of = {str(d["SubnetId"]): str(d.get("AvailabilityZone", "")) for d in described}
    for svc, kind in sorted(missing.items()):
        name = f"com.amazonaws.{plan.region}.{svc}"
        if kind == "Interface":
            # Not every service has an endpoint in every AZ: CreateVpcEndpoint fails
            # with InvalidParameter for a subnet of an AZ the service lacks.
            zones = _service_zones(ec2, name)
            usable = [s for s in subnets if zones is None or zone_of.get(s) in zones]
            if not usable:
                skipped.append(svc)
                plan.changes.append(
                    f"skip the {svc} interface endpoint: {name} has no endpoint in the "
                    f"workers' AZs ({', '.join(sorted(set(zone_of.values())))}); add a subnet "
                    f"in one of {', '.join(sorted(zones or []))}")
                continue
        else:
            usable = subnets
        if kind == "Gateway":
            plan.change(f"create the {svc} gateway endpoint in {vpc} (free)",
                        lambda name=name: ec2.create_vpc_endpoint(  # type: ignore[misc]
                            VpcId=vpc, ServiceName=name, VpcEndpointType="Gateway",
                            RouteTableIds=tables, TagSpecifications=tags))
        else:
            plan.change(f"create the {svc} interface endpoint in {vpc}",
                        lambda name=name, usable=usable: ec2.create_vpc_endpoint(  # type: ignore[misc]
                            VpcId=vpc, ServiceName=name, VpcEndpointType="Interface",
                            SubnetIds=usable, SecurityGroupIds=[group] if group else [],
                            PrivateDnsEnabled=True, TagSpecifications=tags))
    _restrict_egress(plan, ec2, vpc, workers_group, group, skipped=skipped)


def _find_endpoint_group(ec2: Any, vpc: str) -> str | None:
    found = ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": [ENDPOINT_SECURITY_GROUP]},
        {"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    return str(found[0]["GroupId"]) if found else None


def _rule_key(rule: Any) -> tuple[Any, ...]:
    return (rule.get("IpProtocol"), rule.get("FromPort"), rule.get("ToPort"),
            tuple(sorted(p["GroupId"] for p in rule.get("UserIdGroupPairs", []))),
            tuple(sorted(p["PrefixListId"] for p in rule.get("PrefixListIds", []))),
            tuple(sorted(r["CidrIp"] for r in rule.get("IpRanges", []))),
            tuple(sorted(r["CidrIpv6"] for r in rule.get("Ipv6Ranges", []))))


def _restrict_egress(plan: SetupPlan, ec2: Any, vpc: str, workers_group: str,
                     endpoint_group: str | None, *, skipped: list[str]) -> None:
    """Workers' egress: HTTPS to the interface endpoints' group and to S3's prefix list.

    With every endpoint in place, that is all a worker without a public IP
    can reach anyway; the rule makes it so for a NAT gateway too. DNS (the
    VPC resolver) and the task's credentials and metadata endpoint are
    link-local services that security groups do not filter. Left as it is:
    a group that is not starburst's own (``security_groups`` in the config),
    and any group while an endpoint is missing (a service skipped for its AZs
    must be reached some other way, through a NAT gateway).
    """
    [group] = ec2.describe_security_groups(GroupIds=[workers_group])["SecurityGroups"]
    if group.get("GroupName") != provision.SECURITY_GROUP:
        if _allows_all(group):
            plan.changes.append(f"keep the egress rules of {workers_group} (your security "
                                "group, not starburst's)")
        return
    if skipped or endpoint_group is None:
        if _allows_all(group):
            plan.changes.append(
                f"keep allow-all egress on {workers_group}: "
                + (f"no endpoint for {', '.join(skipped)}" if skipped else
                   f"no {ENDPOINT_SECURITY_GROUP} group"))
        return
    lists = ec2.describe_prefix_lists(Filters=[{
        "Name": "prefix-list-name", "Values": [f"com.amazonaws.{plan.region}.s3"]}])
    s3_lists = [{"PrefixListId": str(p["PrefixListId"])} for p in lists["PrefixLists"]]
    wanted: list[Any] = [
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "UserIdGroupPairs": [{"GroupId": endpoint_group}]},
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "PrefixListIds": s3_lists}]
    have = list(group.get("IpPermissionsEgress") or [])
    flat = sorted(_rule_key(r) for r in _split(have))
    if flat == sorted(_rule_key(r) for r in _split(wanted)):
        return

    def apply() -> None:
        if have:
            ec2.revoke_security_group_egress(GroupId=workers_group, IpPermissions=have)
        ec2.authorize_security_group_egress(GroupId=workers_group, IpPermissions=wanted)

    plan.change(f"limit the egress of {workers_group} to HTTPS to the VPC endpoints "
                f"({endpoint_group} and the S3 prefix list)", apply)


def _split(rules: list[Any]) -> list[Any]:
    """One rule per target, as EC2 may group or split them."""
    out: list[Any] = []
    for rule in rules:
        base = {k: rule.get(k) for k in ("IpProtocol", "FromPort", "ToPort")}
        for kind in ("UserIdGroupPairs", "PrefixListIds", "IpRanges", "Ipv6Ranges"):
            for target in rule.get(kind) or []:
                out.append({**base, kind: [target]})
    return out


def _allows_all(group: Any) -> bool:
    return any(r.get("IpProtocol") == "-1" and any(
        c.get("CidrIp") == "0.0.0.0/0" for c in r.get("IpRanges", []))
        for r in group.get("IpPermissionsEgress") or [])


def _service_zones(ec2: Any, name: str) -> set[str] | None:
    """The AZs in which endpoint service ``name`` exists (None: not said, assume all)."""
    details = ec2.describe_vpc_endpoint_services(ServiceNames=[name]).get("ServiceDetails", [])
    for detail in details:
        if detail.get("ServiceName") == name and detail.get("AvailabilityZones"):
            return {str(z) for z in detail["AvailabilityZones"]}
    return None
