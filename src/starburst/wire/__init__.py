"""The wire contract between a client and its workers.

What travels and where it lives: the store keys of a session
(:mod:`.keys`). Nothing here imports anything of starburst above
:mod:`starburst.exceptions`, so the client, the workers, the backends and
the operations commands can all depend on it without depending on each
other (an import-linter contract in ``pyproject.toml`` keeps it so).
"""
