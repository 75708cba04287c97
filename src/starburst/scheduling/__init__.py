"""Scheduling: the events backends report and the pacing of launches.

Pure data and rules, importing nothing of starburst above
:mod:`starburst.exceptions` (an import-linter contract keeps it so): the
backends and the scheduler both depend on it, not on each other.
"""
