"""When and how backup jobs run: timetable, run history, and (later) the runner and the daemon.

Submodules are imported directly (``cassy_scheduler.scheduling.timetable``); this package only
holds the root of the package's exception family so every submodule can share it.
"""

from __future__ import annotations


class SchedulingError(Exception):
    """Root of the scheduling package's errors; catch this to handle any of them."""
