"""Account-level operations: what ``starburst setup``, ``teardown``, ``doctor``,
``status``, ``sessions``, ``logs``, ``cost`` and ``cleanup`` do.

* :mod:`.setup` / :mod:`.teardown`: the one-time, locked-down provisioning
  and its removal; :mod:`.private_network` adds the VPC endpoints of
  ``setup --private``.
* :mod:`.doctor`: every check a Fargate run needs, each with its fix.
* :mod:`.ops`: sessions read from their records in the store, their logs and
  run data; :mod:`.cleanup` removes what ended sessions left behind, and
  :mod:`.local_cleanup` what local sessions left (no AWS needed).

This layer sits above :mod:`starburst.aws` (the AWS helpers the backends use
too) and may read session records and use the transport; nothing below it
imports it (``lint-imports`` checks, see docs/architecture.md). Like
:mod:`starburst.aws`, it needs the ``aws`` extra.
"""

from __future__ import annotations
