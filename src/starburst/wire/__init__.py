"""The wire contract between a client and its workers.

What travels and where it lives: the messages on the queues
(:mod:`.messages`), the frames that carry functions, arguments and
results (:mod:`.serialization`, with :mod:`.tables` and :mod:`.sources`)
and the store keys of a session (:mod:`.keys`). Nothing here imports
anything of starburst but :mod:`starburst.exceptions`, so the client, the
workers, the backends and the operations commands can all depend on it
without depending on each other (import-linter contracts in
``pyproject.toml`` keep it so).
"""
