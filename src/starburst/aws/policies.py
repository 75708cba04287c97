"""The IAM and bucket policies starburst writes (setup, sessions, session roles).

Every statement names the resources it may touch. The few actions AWS
cannot scope to a resource (``Resource: "*"`` is the only value IAM
accepts for them) are listed in :data:`UNSCOPABLE_ACTIONS` with the
reason; :mod:`starburst.aws.policy_lint` checks that every grant on a
wildcard resource is justified, so a test (and ``starburst doctor``) can
hold the line.
"""

from __future__ import annotations

from typing import Any

from ..wire.keys import session_prefix

__all__ = [
    "ECS_EXEC_ACTIONS", "GPU_PASSED_TO", "SESSION_QUEUE_SUFFIXES", "UNSCOPABLE_ACTIONS",
    "bucket_policy", "data_key_statement", "debug_task_policy", "default_execution_policy",
    "execution_policy", "gpu_statements", "instance_policy", "log_bucket_policy", "principal_arn",
    "session_boundary_name", "session_boundary_policy", "session_policy",
    "session_role_statements", "session_roles_writer", "session_trust_policy", "task_policy",
    "tls_only_bucket_policy", "user_policy",
]

#: What ECS Exec needs from the task role: the SSM agent in the task opens its
#: control and data channels with the task's credentials. Only the debug
#: role ``starburst-task-debug`` has them (:func:`debug_task_policy`).
ECS_EXEC_ACTIONS = ("ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel")
_ECS_EXEC_WHY = ("ECS Exec's channels have no ARN; granted only to starburst-task-debug, the "
                 "task role of debug=True sessions")

#: Actions IAM only accepts with ``Resource: "*"``, and why each is needed.
UNSCOPABLE_ACTIONS: dict[str, str] = {
    "ecr:GetAuthorizationToken": "the registry login token is account-wide; the pulls "
                                 "themselves are scoped to the starburst repository",
    "ecs:RegisterTaskDefinition": "task definitions have no ARN before they exist; the role "
                                  "they may name is limited by iam:PassRole",
    "ecs:DeregisterTaskDefinition": "no resource-level permissions in ECS",
    "ec2:CreateSecurityGroup": "creates the no-ingress worker group once (setup only)",
    "ecs:DiscoverPollEndpoint": "the ECS agent on a GPU instance finds its endpoint before it "
                                "belongs to a cluster (GPU instance role only)",
    "servicequotas:RequestServiceQuotaIncrease": "quota requests have no resource ARN "
                                                 "(`starburst quota --request` only)",
    **dict.fromkeys(ECS_EXEC_ACTIONS, _ECS_EXEC_WHY),
}
def principal_arn(caller_arn: str) -> list[str]:
    """The ``aws:PrincipalArn`` patterns a bucket policy matches for ``caller_arn``.

    ``aws:PrincipalArn`` of an assumed role is the role's ARN *with its
    path* (IAM Identity Center roles live under
    ``role/aws-reserved/sso.amazonaws.com/...``), while the STS ARN
    (``assumed-role/<name>/<session>``) carries only its name. Role names
    are unique in an account whatever their path, so ``role/<name>`` and
    ``role/*/<name>`` (for ``StringLike``) match that one role and no other.
    Any other caller ARN (an IAM user, the root) is its own principal ARN.
    """
    if ":assumed-role/" in caller_arn:
        head, _, rest = caller_arn.partition(":assumed-role/")
        role = rest.split("/", 1)[0]
        iam = f"{head.replace(':sts:', ':iam:')}:role"
        return [f"{iam}/{role}", f"{iam}/*/{role}"]
    return [caller_arn]


def data_key_statement(kms_key_arn: str, *, region: str, sid: str = "RunDataKey"
                       ) -> dict[str, Any]:
    """Use of the bucket's SSE-KMS key, only through S3 in ``region``.

    With default encryption by a customer managed key, every PutObject needs
    ``kms:GenerateDataKey`` and every GetObject ``kms:Decrypt`` on that key
    for the caller; ``kms:ViaService`` keeps the grant to requests S3 makes
    on the caller's behalf, so the key cannot be used directly.
    """
    return {"Sid": sid, "Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": kms_key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}}


def _doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _key_prefix(prefix: str) -> str:
    return f"{prefix.strip('/')}/" if prefix.strip("/") else ""


def _deny_insecure_transport(arn: str) -> dict[str, Any]:
    return {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": {"AWS": "*"},
            "Action": "s3:*", "Resource": [arn, f"{arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def tls_only_bucket_policy(bucket: str, *, part: str) -> dict[str, Any]:
    """TLS only: the bucket policy of a bucket a session creates (setup not run).

    The writers-only rule of :func:`bucket_policy` is left out on purpose: it
    names every identity that may write the run prefix (the task roles of the
    config, each identity that ran setup), which a session cannot know; a
    wrong list would silently deny a teammate's sessions or a configured
    ``task_role_arn``. `starburst setup` adds it.
    """
    return _doc(_deny_insecure_transport(f"arn:{part}:s3:::{bucket}"))


def bucket_policy(bucket: str, prefix: str, *, part: str, writers: list[str]) -> dict[str, Any]:
    """TLS only; under the run prefix, writes only from ``writers`` (principal ARNs)."""
    arn = f"arn:{part}:s3:::{bucket}"
    return _doc(
        _deny_insecure_transport(arn),
        {"Sid": "RunPrefixWritersOnly", "Effect": "Deny", "Principal": {"AWS": "*"},
         "Action": ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
         "Resource": f"{arn}/{_key_prefix(prefix)}*",
         "Condition": {"StringNotLike": {"aws:PrincipalArn": sorted(set(writers))}}})


def log_bucket_policy(log_bucket: str, source_bucket: str, *, part: str,
                      account: str) -> dict[str, Any]:
    """Lets S3 server access logging of ``source_bucket`` deliver into ``log_bucket``."""
    arn = f"arn:{part}:s3:::{log_bucket}"
    return _doc(
        _deny_insecure_transport(arn),
        {"Sid": "S3ServerAccessLogs", "Effect": "Allow",
         "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject",
         "Resource": f"{arn}/access/{source_bucket}/*",
         "Condition": {"ArnLike": {"aws:SourceArn": f"arn:{part}:s3:::{source_bucket}"},
                       "StringEquals": {"aws:SourceAccount": account}}})


def execution_policy(*, part: str, region: str, account: str, repository: str,
                     log_group: str) -> dict[str, Any]:
    """ECS's role for the task: pull from the starburst repository, write its log group,
    and inject the session key (the task role, which worker code runs as, cannot read
    any session's key: :mod:`starburst.aws.session_key`)."""
    return _doc(
        {"Sid": "RegistryLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken",
         "Resource": "*"},
        *_pull_and_log(part=part, region=region, account=account, repository=repository,
                       log_group=log_group),
        session_key_statement(part=part, region=region, account=account))


def session_key_statement(*, part: str, region: str, account: str,
                          actions: tuple[str, ...] = ("secretsmanager:GetSecretValue",),
                          sid: str = "InjectSessionKeys") -> dict[str, Any]:
    """Secrets Manager ``actions`` on the session key secrets (``starburst/*``) only."""
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions),
            "Resource": f"arn:{part}:secretsmanager:{region}:{account}:secret:starburst/*"}


def default_execution_policy(*, part: str, region: str, account: str,
                             log_group: str) -> dict[str, Any]:
    """The execution role a session creates when `starburst setup` was not run: pull
    from any ECR repository of the account in ``region`` (the configured image may be
    in any), write the session's log group, inject session keys. Setup narrows pulls
    to its repository."""
    return _doc(
        {"Sid": "RegistryLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken",
         "Resource": "*"},
        {"Sid": "PullAccountImages", "Effect": "Allow",
         "Action": ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchGetImage"],
         "Resource": f"arn:{part}:ecr:{region}:{account}:repository/*"},
        {"Sid": "WriteWorkerLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"arn:{part}:logs:{region}:{account}:log-group:{log_group}:*"},
        session_key_statement(part=part, region=region, account=account))


def _pull_and_log(*, part: str, region: str, account: str, repository: str,
                  log_group: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pull the worker image from the starburst repository; write its log group.

    What both a Fargate task's execution role and a GPU instance's role
    need, scoped the same way.
    """
    return (
        {"Sid": "PullWorkerImage", "Effect": "Allow",
         "Action": ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchGetImage"],
         "Resource": f"arn:{part}:ecr:{region}:{account}:repository/{repository}"},
        {"Sid": "WriteWorkerLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"arn:{part}:logs:{region}:{account}:log-group:{log_group}:*"})


def instance_policy(*, part: str, region: str, account: str, repository: str,
                    log_group: str) -> dict[str, Any]:
    """The GPU instances' role (what AmazonEC2ContainerServiceforEC2Role grants, scoped):
    the ECS agent joins the Batch compute environment's cluster and reports on its
    jobs, pulls from the starburst repository, and the awslogs driver (which runs with
    the instance's credentials on EC2) writes the starburst log group."""
    ecs = f"arn:{part}:ecs:{region}:{account}"
    return _doc(
        {"Sid": "AgentUnscopable", "Effect": "Allow", "Resource": "*",
         "Action": ["ecs:DiscoverPollEndpoint", "ecr:GetAuthorizationToken",
                    "ec2:DescribeTags"]},
        {"Sid": "AgentCluster", "Effect": "Allow",
         "Action": ["ecs:RegisterContainerInstance", "ecs:DeregisterContainerInstance",
                    "ecs:UpdateContainerInstancesState", "ecs:Poll",
                    "ecs:StartTelemetrySession", "ecs:SubmitContainerStateChange",
                    "ecs:SubmitTaskStateChange", "ecs:SubmitAttachmentStateChanges"],
         # Batch names a compute environment's cluster after it: <name>_Batch_<id>.
         "Resource": [f"{ecs}:cluster/starburst-gpu-*",
                      f"{ecs}:container-instance/starburst-gpu-*/*"]},
        *_pull_and_log(part=part, region=region, account=account, repository=repository,
                       log_group=log_group))


def task_policy(*, part: str, account: str, bucket: str, prefix: str, region: str,
                kms_key: str | None = None) -> dict[str, Any]:
    """What worker code runs as: this bucket's prefix and this account's starburst queues
    in ``region`` (the bucket's: the role is global, so each bucket's inline policy names
    its own region); with ``kms_key`` (the bucket's SSE-KMS key ARN), that key through S3."""
    key_prefix = _key_prefix(prefix)
    doc = _doc(
        {"Sid": "RunData", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                    "s3:AbortMultipartUpload"],
         "Resource": f"arn:{part}:s3:::{bucket}/{key_prefix}*"},
        {"Sid": "ListRunData", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": f"arn:{part}:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": f"{key_prefix}*"}}},
        {"Sid": "SessionQueues", "Effect": "Allow",
         "Action": ["sqs:ReceiveMessage", "sqs:SendMessage", "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"],
         "Resource": f"arn:{part}:sqs:{region}:{account}:starburst-*"})
    _add_data_key(doc, kms_key, region)
    return doc


#: The queues of a session, by the suffix :func:`starburst.transport.aws.queue_names`
#: gives each (``starburst-<session>-<suffix>``; a test holds the two together):
#: named one by one, since ``starburst-<session>-*`` would also match the queues
#: of a session whose id starts with ``<session>-``.
SESSION_QUEUE_SUFFIXES = ("tasks", "results", "dead")
#: What a worker does with its queues: lease, renew, acknowledge, send notices.
_WORKER_QUEUE_ACTIONS = ["sqs:ReceiveMessage", "sqs:SendMessage", "sqs:DeleteMessage",
                         "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
#: What a worker does with the store: read payloads, shared objects, the code
#: archive, cancellations, the client's heartbeat and handed-back outcomes;
#: write results, commits and handed-back outcomes; delete a losing result.
_WORKER_OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                          "s3:AbortMultipartUpload"]


def session_policy(*, part: str, region: str, account: str, bucket: str, prefix: str,
                   session: str, kms_key: str | None = None,
                   debug: bool = False) -> dict[str, Any]:
    """The inline policy of a session's own task role (``starburst-session-<id>``).

    Every key a worker reads or writes lies below the session's prefix
    (:func:`starburst.wire.keys.session_prefix`: ``sessions/<id>/`` under the
    run prefix; payloads, shared objects, the code archive, cancellations,
    the client heartbeat, results, commits, handed-back outcomes), so that
    prefix, listed and written, and the session's three queues are all it
    grants; with ``kms_key``, that key through S3; with ``debug``, the ECS
    Exec channels (:data:`ECS_EXEC_ACTIONS`).
    """
    below = f"{_key_prefix(prefix)}{session_prefix(session)}"
    sqs = f"arn:{part}:sqs:{region}:{account}:starburst-{session}"
    doc = _doc(
        *_objects_below(part, bucket, below),
        {"Sid": "SessionQueues", "Effect": "Allow", "Action": list(_WORKER_QUEUE_ACTIONS),
         "Resource": [f"{sqs}-{suffix}" for suffix in SESSION_QUEUE_SUFFIXES]})
    _add_data_key(doc, kms_key, region)
    if debug:
        doc["Statement"].append({"Sid": "EcsExecChannels", "Effect": "Allow",
                                 "Action": list(ECS_EXEC_ACTIONS), "Resource": "*"})
    return doc


def _objects_below(part: str, bucket: str, below: str) -> tuple[dict[str, Any], ...]:
    """A worker's object actions on ``bucket`` below the key prefix ``below``, and the
    listing of that prefix only."""
    return (
        {"Sid": "SessionData", "Effect": "Allow", "Action": list(_WORKER_OBJECT_ACTIONS),
         "Resource": f"arn:{part}:s3:::{bucket}/{below}*"},
        {"Sid": "ListSessionData", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": f"arn:{part}:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": f"{below}*"}}})


def session_boundary_policy(*, part: str, region: str, account: str, bucket: str,
                            prefix: str, kms_key: str | None = None) -> dict[str, Any]:
    """The permissions boundary of every session role: the most any may ever do.

    A user allowed to create ``starburst-session-*`` roles only with this
    boundary (:func:`session_role_statements`) cannot make one that does more
    than a worker: whatever its inline policy says, the role gets the
    intersection. So: objects below ``sessions/`` of the run prefix, the
    ``starburst-*`` queues of ``region``, the bucket's KMS key through S3, and
    the ECS Exec channels (debug sessions).
    """
    below = f"{_key_prefix(prefix)}sessions/"
    doc = _doc(
        *_objects_below(part, bucket, below),
        {"Sid": "SessionQueues", "Effect": "Allow", "Action": list(_WORKER_QUEUE_ACTIONS),
         "Resource": f"arn:{part}:sqs:{region}:{account}:starburst-*"})
    _add_data_key(doc, kms_key, region)
    doc["Statement"].append({"Sid": "EcsExecChannels", "Effect": "Allow",
                             "Action": list(ECS_EXEC_ACTIONS), "Resource": "*"})
    return doc


def session_trust_policy(*, part: str, region: str, account: str) -> dict[str, Any]:
    """Who may assume a session role: ECS tasks (Fargate tasks, and the containers of
    GPU Batch jobs, whose job role ECS assumes) of this account and region only
    (``aws:SourceAccount``/``aws:SourceArn`` against the confused deputy)."""
    return _doc({"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                 "Action": "sts:AssumeRole",
                 "Condition": {"StringEquals": {"aws:SourceAccount": account},
                               "ArnLike": {"aws:SourceArn":
                                           f"arn:{part}:ecs:{region}:{account}:*"}}})


def session_roles_writer(*, part: str, account: str) -> str:
    """The ``aws:PrincipalArn`` pattern of every session role, for the writers-only rule
    of :func:`bucket_policy` (their workers write results under the run prefix)."""
    return f"arn:{part}:iam::{account}:role/starburst-session-*"


def session_role_statements(*, part: str, account: str, boundary: str) -> list[dict[str, Any]]:
    """What the user needs to give each session a role of its own (added to
    :func:`user_policy`): create and tag ``starburst-session-*`` roles and write their
    inline policy only with the ``boundary`` policy ARN as their permissions boundary;
    delete them; pass them to ECS tasks (Fargate) or Batch (GPU)."""
    roles = f"arn:{part}:iam::{account}:role/starburst-session-*"
    bounded = {"StringEquals": {"iam:PermissionsBoundary": boundary}}
    return [
        {"Sid": "SessionRolesBounded", "Effect": "Allow",
         "Action": ["iam:CreateRole", "iam:PutRolePolicy"], "Resource": roles,
         "Condition": bounded},
        {"Sid": "TagSessionRoles", "Effect": "Allow", "Action": "iam:TagRole",
         "Resource": roles,
         "Condition": {"ForAllValues:StringEquals": {
             "aws:TagKeys": ["starburst:session", "starburst:managed"]}}},
        # Reading a role back, and deleting it (after its inline policy), takes
        # nothing from anyone else.
        {"Sid": "ReadAndEndSessionRoles", "Effect": "Allow",
         "Action": ["iam:GetRolePolicy", "iam:ListRolePolicies", "iam:ListRoleTags",
                    "iam:DeleteRolePolicy", "iam:DeleteRole"], "Resource": roles},
        {"Sid": "SessionBoundary", "Effect": "Allow",
         "Action": ["iam:GetPolicy", "iam:GetPolicyVersion"], "Resource": boundary},
        {"Sid": "PassSessionRoles", "Effect": "Allow", "Action": "iam:PassRole",
         "Resource": roles,
         "Condition": {"StringEquals": {"iam:PassedToService": GPU_PASSED_TO}}},
    ]


def _add_data_key(doc: dict[str, Any], kms_key: str | None, region: str | None) -> None:
    if kms_key is None:
        return
    if region is None:
        raise ValueError("a KMS key needs the region of the bucket it encrypts")
    doc["Statement"].append(data_key_statement(kms_key, region=region))


def debug_task_policy(*, part: str, account: str, bucket: str, prefix: str, region: str,
                      kms_key: str | None = None) -> dict[str, Any]:
    """The task role of debug sessions (``starburst-task-debug``): :func:`task_policy`
    plus the four ECS Exec channel actions, which IAM accepts only on ``*``, so that
    ``aws ecs execute-command`` can reach a kept worker. Ordinary workers never get them."""
    doc = task_policy(part=part, account=account, bucket=bucket, prefix=prefix,
                      kms_key=kms_key, region=region)
    doc["Statement"].append({"Sid": "EcsExecChannels", "Effect": "Allow",
                             "Action": list(ECS_EXEC_ACTIONS), "Resource": "*"})
    return doc


#: Where GPU workers' job and execution roles may be passed. The Service
#: Authorization Reference lists iam:PassedToService values for Batch's
#: CreateComputeEnvironment (batch, ec2, spotfleet) but none for
#: RegisterJobDefinition, whose roles ECS assumes for the job's container:
#: both Batch and ECS tasks are allowed, and no other service.
GPU_PASSED_TO = ["batch.amazonaws.com", "ecs-tasks.amazonaws.com"]
#: The tag every GPU worker job carries from SubmitJob (backends/batch.py tags
#: each job ``starburst:session=<id>``): what makes a Batch job starburst's.
_JOB_TAG = "aws:ResourceTag/starburst:session"


def gpu_statements(*, part: str, region: str, account: str) -> list[dict[str, Any]]:
    """What running GPU sessions adds (after `starburst setup --gpu`): submit jobs to
    starburst's Batch queues and stop starburst's own jobs, register starburst job
    definitions (naming the starburst roles, passed to Batch or ECS tasks only), and
    read the EC2 GPU quota and the instances that count against it."""
    batch = f"arn:{part}:batch:{region}:{account}"
    roles = [f"arn:{part}:iam::{account}:role/starburst-execution",
             f"arn:{part}:iam::{account}:role/starburst-task"]
    return [
        {"Sid": "GpuReads", "Effect": "Allow", "Resource": "*",
         "Action": ["batch:DescribeJobs", "batch:DescribeJobQueues", "batch:ListJobs",
                    "batch:DescribeComputeEnvironments", "batch:DescribeJobDefinitions",
                    "ec2:DescribeInstances", "servicequotas:GetAWSDefaultServiceQuota"]},
        {"Sid": "GpuJobs", "Effect": "Allow",
         "Action": ["batch:SubmitJob", "batch:TagResource", "batch:RegisterJobDefinition"],
         "Resource": [f"{batch}:job-queue/starburst-gpu-*",
                      f"{batch}:job-definition/starburst-gpu-*"]},
        # A job's ARN holds an id Batch makes up, so it cannot be named in advance.
        # The Service Authorization Reference gives CancelJob and TerminateJob the
        # resource type job (arn:...:job/${JobId}) with one condition key,
        # aws:ResourceTag/${TagKey}: only jobs tagged starburst:session may be stopped.
        {"Sid": "GpuStopOwnJobs", "Effect": "Allow",
         "Action": ["batch:TerminateJob", "batch:CancelJob"], "Resource": f"{batch}:job/*",
         "Condition": {"Null": {_JOB_TAG: "false"}}},
        # SubmitJob's tags are authorized as batch:TagResource on the new job: only the
        # session tag may be set. (An identity with this policy could still tag a job
        # that is not starburst's and then stop it: two deliberate calls by the user.)
        {"Sid": "GpuTagOwnJobs", "Effect": "Allow", "Action": "batch:TagResource",
         "Resource": f"{batch}:job/*",
         "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["starburst:session"]}}},
        {"Sid": "GpuJobRoles", "Effect": "Allow", "Action": "iam:PassRole",
         "Resource": roles,
         "Condition": {"StringEquals": {"iam:PassedToService": GPU_PASSED_TO}}},
    ]


def session_boundary_name(bucket: str) -> str:
    """The managed policy that bounds the session roles of ``bucket`` (IAM is global,
    buckets are per region: one boundary per bucket)."""
    return f"starburst-session-boundary-{bucket}"[:128]


def user_policy(*, part: str, region: str, account: str, bucket: str, prefix: str,
                cluster: str, repository: str, log_group: str,
                gpu: bool = False, kms_key: str | None = None) -> dict[str, Any]:
    """The least the user's own identity needs to run sessions (after `starburst setup`),
    each with a task role of its own (:func:`session_role_statements`); with ``gpu``,
    GPU sessions too (:func:`gpu_statements`); with ``kms_key`` (the bucket's SSE-KMS
    key ARN), that key through S3 (:func:`data_key_statement`)."""
    key_prefix = _key_prefix(prefix)
    ecs = f"arn:{part}:ecs:{region}:{account}"
    doc = _doc(
        {"Sid": "Unscopable", "Effect": "Allow", "Resource": "*",
         "Action": ["ecr:GetAuthorizationToken", "ecs:RegisterTaskDefinition",
                    "ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition",
                    "ecs:ListTasks", "ecs:ListClusters", "ec2:DescribeVpcs", "ec2:DescribeSubnets",
                    "ec2:DescribeSecurityGroups", "logs:DescribeLogGroups",
                    "servicequotas:GetServiceQuota",
                    "servicequotas:ListRequestedServiceQuotaChangeHistory",
                    "servicequotas:ListRequestedServiceQuotaChangeHistoryByQuota",
                    "pricing:GetProducts", "sts:GetCallerIdentity", "iam:ListRoles",
                    "secretsmanager:ListSecrets"]},
        {"Sid": "RunWorkers", "Effect": "Allow",
         "Action": ["ecs:RunTask", "ecs:StopTask", "ecs:DescribeTasks", "ecs:TagResource"],
         "Resource": [f"{ecs}:task-definition/starburst-*", f"{ecs}:task/{cluster}/*"]},
        # The Fargate vCPUs in use count every cluster's tasks (quota.vcpus_in_use):
        # ListClusters (unscopable, above), then DescribeTasks, a read, in each.
        {"Sid": "CountFargateVcpus", "Effect": "Allow", "Action": "ecs:DescribeTasks",
         "Resource": f"{ecs}:task/*"},
        {"Sid": "Cluster", "Effect": "Allow", "Action": ["ecs:DescribeClusters"],
         "Resource": f"{ecs}:cluster/{cluster}"},
        {"Sid": "PassRoles", "Effect": "Allow", "Action": "iam:PassRole",
         "Resource": [f"arn:{part}:iam::{account}:role/starburst-execution",
                      f"arn:{part}:iam::{account}:role/starburst-task",
                      f"arn:{part}:iam::{account}:role/starburst-task-debug"],
         "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}},
        {"Sid": "DebugExec", "Effect": "Allow", "Action": "ecs:ExecuteCommand",
         "Resource": [f"{ecs}:cluster/{cluster}", f"{ecs}:task/{cluster}/*"]},
        {"Sid": "ReadRoles", "Effect": "Allow", "Action": ["iam:GetRole"],
         "Resource": f"arn:{part}:iam::{account}:role/starburst-*"},
        {"Sid": "RunData", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                    "s3:AbortMultipartUpload"],
         "Resource": f"arn:{part}:s3:::{bucket}/{key_prefix}*"},
        {"Sid": "Bucket", "Effect": "Allow",
         # GetEncryptionConfiguration: a session role is granted the bucket's KMS key.
         "Action": ["s3:ListBucket", "s3:GetBucketLocation", "s3:GetEncryptionConfiguration"],
         "Resource": f"arn:{part}:s3:::{bucket}"},
        {"Sid": "SessionQueues", "Effect": "Allow",
         "Action": ["sqs:CreateQueue", "sqs:DeleteQueue", "sqs:GetQueueUrl",
                    "sqs:GetQueueAttributes", "sqs:SendMessage", "sqs:ReceiveMessage",
                    "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:TagQueue",
                    "sqs:ListQueueTags", "sqs:ListQueues"],
         "Resource": f"arn:{part}:sqs:{region}:{account}:starburst-*"},
        {"Sid": "WorkerLogs", "Effect": "Allow",
         "Action": ["logs:GetLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams"],
         "Resource": f"arn:{part}:logs:{region}:{account}:log-group:{log_group}:*"},
        {"Sid": "WorkerImage", "Effect": "Allow",
         "Action": ["ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload",
                    "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage",
                    "ecr:BatchGetImage", "ecr:DescribeImages", "ecr:DescribeRepositories"],
         "Resource": f"arn:{part}:ecr:{region}:{account}:repository/{repository}"},
        session_key_statement(
            part=part, region=region, account=account, sid="SessionKeys",
            actions=("secretsmanager:CreateSecret", "secretsmanager:GetSecretValue",
                     "secretsmanager:DeleteSecret", "secretsmanager:TagResource")))
    boundary = f"arn:{part}:iam::{account}:policy/{session_boundary_name(bucket)}"
    doc["Statement"].extend(session_role_statements(part=part, account=account,
                                                    boundary=boundary))
    if gpu:
        doc["Statement"].extend(gpu_statements(part=part, region=region, account=account))
    _add_data_key(doc, kms_key, region)
    return doc
