"""A notice: what one target is told, ready to send by mail, chat or command."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Event(StrEnum):
    """What a notice is about."""

    RUN = "run"  # a run ended
    STALE = "stale"  # no successful run for alert_after
    FRESH = "fresh"  # a stale job succeeded again
    CONFIG = "config"  # the daemon refused an edit of its config file, or took one again


@dataclass(frozen=True)
class Notice:
    """A subject a person can triage from a phone, a plain-text and HTML body, and the facts
    a program can read (the command hook's environment and stdin)."""

    event: Event
    job_name: str
    subject: str
    text: str
    html: str
    facts: Mapping[str, object]
    failing: bool
    run_id: int | None = None
