"""The engine: what one run does (runner), the loop that fires jobs (daemon), the locks that
keep runs apart, and the lookups a run needs (resolve, reconcile).

Submodules are imported directly (``cassy_scheduler.scheduling.runner``); this package only
holds the root of the package's exception family so every submodule can share it.
"""

from __future__ import annotations


class SchedulingError(Exception):
    """Root of the scheduling package's errors; catch this to handle any of them."""
