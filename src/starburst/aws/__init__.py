"""AWS plumbing shared by the S3/SQS transport, the Fargate and Batch backends and
the operations (:mod:`starburst.admin`).

* :mod:`.clients`: the one boto3 client factory (credential chain, region,
  adaptive retries, endpoint overrides) and :func:`translate_errors`.
* :mod:`.config`: arguments > ``STARBURST_*`` environment > config file > defaults.
* :mod:`.provision`: idempotent creation of what a run needs, tagged.
* :mod:`.inventory`: a session's ECS tasks, Batch jobs and queues, found by
  tag and name.
* :mod:`.sizes`: the CPU/memory combinations Fargate accepts.

This layer imports neither the transport nor the session (``lint-imports``
checks; see docs/architecture.md). Nothing here is imported by
``import starburst``: it needs the ``aws`` extra.
"""

from __future__ import annotations
