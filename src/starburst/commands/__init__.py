"""Subcommands of the ``starburst`` command, one module per command or group.

:mod:`starburst.cli` registers each by name and imports it on use.
"""
