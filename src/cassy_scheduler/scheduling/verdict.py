"""How a run ends, judged from what the server's rows said when waiting stopped.

Succeeded when every node COMPLETED; failed, naming each failed node and its cause, when one
FAILED; timed out otherwise, saying how long the rows have been unfinished and whether the
server will ever end them (the built-in server does; Scalar's Cassy leaves rows STARTED
when its SSH to a node fails).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cassy_scheduler.outcome import BackupOutcome
from cassy_scheduler.protocol.types import NodeStatus, OperationStatus
from cassy_scheduler.records import Failure, Outcome


@dataclass(frozen=True)
class Verdict:
    """A run's outcome, why, in words, and every node with a reason where one is known."""

    outcome: Outcome
    failure: Failure | None
    error: str | None
    nodes: tuple[NodeStatus, ...]


def judge(
    done: BackupOutcome, wait_timeout: timedelta, now: datetime, builtin: Callable[[], bool]
) -> Verdict:
    """The verdict on `done`; `builtin` tells whether the server is the built-in one (asked
    only for a timeout)."""
    nodes = tuple(
        NodeStatus(n.target_ip, n.status, n.reason or _reason(n.status, done)) for n in done.nodes
    )
    if done.succeeded:
        return Verdict(Outcome.SUCCEEDED, None, None, nodes)
    failed = done.failed_nodes
    if failed:
        causes = [f"{n.target_ip}: {n.reason}" for n in done.nodes if n.reason]
        where = "; ".join(causes) if causes else "see the server's log for each node's cause"
        error = (
            f"the backup failed on node(s) {', '.join(failed)} (snapshot "
            f"{done.ack.snapshot_id}); {where}"
        )
        return Verdict(Outcome.FAILED, Failure.NODES_FAILED, error, nodes)
    pending = ", ".join(done.pending_nodes) or "every node"
    detail = f"; the last poll failed: {done.last_error}" if done.last_error else ""
    since = done.ack.created_at
    started = (
        f"its rows have been {_pending_status(done)} for {span(now - since)} "
        f"(since {since:%Y-%m-%d %H:%M:%S} UTC, the server's clock)"
    )
    error = (
        f"no outcome within wait_timeout {wait_timeout} from {pending} (snapshot "
        f"{done.ack.snapshot_id}){detail}: {started}; {_what_next(builtin, done)}"
    )
    return Verdict(Outcome.TIMED_OUT, Failure.TIMED_OUT, error, nodes)


def span(length: timedelta) -> str:
    """'2h 5m', '7m 30s' or '45s': how long, to the second, for people."""
    seconds = max(int(length.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


def _pending_status(done: BackupOutcome) -> str:
    statuses = sorted({n.status.name for n in done.nodes if not n.status.is_final})
    return "/".join(statuses) or "unfinished"


def _what_next(builtin: Callable[[], bool], done: BackupOutcome) -> str:
    """What is known about whether the server will still end those rows."""
    follow = f"`cassy-scheduler backups {done.ack.cluster_id}` shows them"
    try:
        is_builtin = builtin()
    except Exception:  # asking must not change how the run is recorded
        is_builtin = False
    if is_builtin:
        return (
            "the built-in server ends every row COMPLETED or FAILED (a stop or restart fails "
            f"what it leaves), so it may still finish: {follow}; or raise wait_timeout"
        )
    return (
        "Scalar's Cassy does not fail such rows by itself (a lost SSH connection to a node "
        "leaves them STARTED for ever): check those nodes and Cassy's log; "
        f"{follow}; or raise wait_timeout"
    )


def _reason(status: OperationStatus, done: BackupOutcome) -> str | None:
    if status.is_final:
        return None
    if done.timed_out:
        return "still unfinished"
    return "unfinished when the run ended; the server may still complete it"
