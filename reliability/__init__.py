"""Reliability tooling: bad-input batteries, fuzz targets, kill/restart drills and soak runs.

Kept apart from ``blindmatch.server`` so the service imports neither the client nor
any protocol internals; this package drives the real service from outside, the way
an attacker or a crashing machine would. ``python -m blindmatch.reliability --out DIR``
writes RELIABILITY.md.
"""

from . import faults, harness
from .faults import KillReport, SoakReport, kill_cycles, soak

__all__ = ["KillReport", "SoakReport", "faults", "harness", "kill_cycles", "soak"]
