"""How long each application instance stayed paused for a cluster-wide snapshot.

Cassy's wire protocol has no field for it, so the server stores this report as a small JSON
object next to the snapshot's node prefixes (storage.layout.pause_report_key), once every
node's snapshot is taken and every instance unpaused; anyone reading the storage (an
operator, a tool) finds how long the applications waited. The format has this one definition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PAUSE_REPORT_FORMAT_VERSION = 1


class PauseReportError(ValueError):
    """A stored pause report is not valid JSON of the known format."""


@dataclass(frozen=True)
class InstancePause:
    """One instance: whether it paused and resumed, and for how long it was held."""

    instance: str
    paused: bool  # acknowledged Pause in time
    unpaused: bool  # acknowledged Unpause
    paused_s: float  # from sending Pause until Unpause was acknowledged (or given up)
    pause_ack_s: float | None  # how long Pause took to be acknowledged; None if it never was
    error: str | None = None


@dataclass(frozen=True)
class PauseReport:
    """Every instance of one pause, and when it began (ms since the epoch)."""

    instances: tuple[InstancePause, ...]
    started_at_ms: int
    cluster_id: str = ""
    snapshot_id: str = ""
    created_at_ms: int = 0

    @property
    def all_unpaused(self) -> bool:
        return all(i.unpaused for i in self.instances)

    def describe(self) -> str:
        """'10.0.0.5:20052=1.84s 10.0.0.6:20052=1.80s', for logs and messages."""
        return " ".join(f"{i.instance}={i.paused_s:.2f}s" for i in self.instances)

    def to_json(self) -> str:
        document = {
            "format_version": PAUSE_REPORT_FORMAT_VERSION,
            "cluster_id": self.cluster_id,
            "snapshot_id": self.snapshot_id,
            "created_at": self.created_at_ms,
            "started_at": self.started_at_ms,
            "instances": [
                {
                    "instance": i.instance,
                    "paused": i.paused,
                    "unpaused": i.unpaused,
                    "paused_seconds": round(i.paused_s, 3),
                    "pause_ack_seconds": None if i.pause_ack_s is None else round(i.pause_ack_s, 3),
                    "error": i.error,
                }
                for i in self.instances
            ],
        }
        return json.dumps(document, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> PauseReport:
        try:
            document = json.loads(text)
            if document["format_version"] != PAUSE_REPORT_FORMAT_VERSION:
                raise PauseReportError(
                    f"pause report format {document['format_version']} is not "
                    f"{PAUSE_REPORT_FORMAT_VERSION}: use a matching cassy-scheduler"
                )
            return cls(
                instances=tuple(_instance(raw) for raw in document["instances"]),
                started_at_ms=int(document["started_at"]),
                cluster_id=str(document["cluster_id"]),
                snapshot_id=str(document["snapshot_id"]),
                created_at_ms=int(document["created_at"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, PauseReportError):
                raise
            raise PauseReportError(f"not a pause report ({exc!r}): it may be corrupt") from None


def _instance(raw: dict[str, Any]) -> InstancePause:
    ack = raw["pause_ack_seconds"]
    return InstancePause(
        instance=str(raw["instance"]),
        paused=bool(raw["paused"]),
        unpaused=bool(raw["unpaused"]),
        paused_s=float(raw["paused_seconds"]),
        pause_ack_s=None if ack is None else float(ack),
        error=None if raw["error"] is None else str(raw["error"]),
    )
