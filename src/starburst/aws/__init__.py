"""AWS plumbing shared by the S3/SQS transport and the Fargate backend.

* :mod:`.clients`: the one boto3 client factory (credential chain, region,
  adaptive retries, endpoint overrides) and :func:`translate_errors`.
* :mod:`.config`: arguments > ``STARBURST_*`` environment > config file > defaults.
* :mod:`.provision`: idempotent creation of what a run needs, tagged.
* :mod:`.sizes`: the CPU/memory combinations Fargate accepts.

Nothing here is imported by ``import starburst``: it needs the ``aws`` extra.
"""

from __future__ import annotations
