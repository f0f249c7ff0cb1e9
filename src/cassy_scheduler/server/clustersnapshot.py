"""The consistent cut of a cluster-wide snapshot: pause every application, snapshot every node
at once, unpause every application.

A cut is all or nothing. If any instance refuses to pause, no node is snapshotted. If any
node's snapshot fails, or an instance cannot be unpaused, or the window is ended early (the
server stopping), the snapshots already taken are cleared, so no half cut is left behind to
be mistaken for a consistent one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cassy_scheduler.node.nodetool import Nodetool
from cassy_scheduler.protocol.pause_report import PauseReport
from cassy_scheduler.server.applications import AppInstance, ApplicationFinder, ApplicationsConfig
from cassy_scheduler.server.pause import GrpcAdminClient, Pauser, PauseWindow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterWideSetup:
    """What a server needs for cluster-wide snapshots: where instances are, how to pause."""

    finder: ApplicationFinder
    pauser: Pauser

    @classmethod
    def from_config(cls, config: ApplicationsConfig | None) -> ClusterWideSetup | None:
        """The setup the [applications] table asks for; None when there is no such table."""
        if config is None:
            return None
        pauser = Pauser(
            GrpcAdminClient(),
            pause_timeout_s=config.pause_timeout_s,
            unpause_timeout_s=config.unpause_timeout_s,
        )
        return cls(ApplicationFinder(config), pauser)


@dataclass(frozen=True)
class PreparedNode:
    """One node ready for the cut: where its data is and what to snapshot."""

    address: str
    data_dir: Path
    keyspaces: tuple[str, ...]


@dataclass(frozen=True)
class TagOnNodes:
    """Snapshots named `tag` of each prepared node's keyspaces, through nodetool."""

    tag: str
    nodes: Mapping[str, PreparedNode]
    nodetool: Callable[[str], Nodetool]

    def snapshot(self, node: str) -> None:
        self.nodetool(node).snapshot(self.tag, self.nodes[node].keyspaces)

    def clear(self, node: str) -> None:
        self.nodetool(node).clear_snapshot(self.tag)


class NodeSnapshots(Protocol):
    """Taking and clearing one snapshot tag on one node."""

    def snapshot(self, node: str) -> None: ...

    def clear(self, node: str) -> None: ...


@dataclass(frozen=True)
class CutResult:
    """The pause report, and per node why its snapshot is not usable (empty: all are)."""

    report: PauseReport
    failures: Mapping[str, str]

    @property
    def succeeded(self) -> bool:
        return not self.failures


def _reason(error: BaseException | None) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:500] if text else repr(error)


def take_consistent_cut(
    nodes: Sequence[str],
    instances: Sequence[AppInstance],
    pauser: Pauser,
    snapshots: NodeSnapshots,
    pool: Executor,
    *,
    opened: Callable[[PauseWindow], None] = lambda _window: None,
    closed: Callable[[PauseWindow], None] = lambda _window: None,
) -> CutResult:
    """Pause, snapshot `nodes` in parallel on `pool`, unpause; clear everything on failure.

    Raises PauseFailedError (every instance already unpaused, nothing snapshotted) when an
    instance does not pause. `opened` (called before pausing starts) and `closed` let the
    caller track the window, so that a stopping server can end it.
    """
    window = pauser.window(instances)
    opened(window)
    try:
        window.open()
        futures = {pool.submit(snapshots.snapshot, node): node for node in nodes}
        wait(futures)
    finally:
        report = window.release()
        closed(window)
    failures = {
        node: _reason(future.exception())
        for future, node in futures.items()
        if future.exception() is not None
    }
    why = _why_unusable(failures, report, window.interrupted)
    if why is None:
        log.info("consistent cut taken nodes=%s paused_time %s", ",".join(nodes), report.describe())
        return CutResult(report, {})
    log.warning("cluster-wide snapshot abandoned, clearing it reason=%s", why)
    cleared = _clear_all(nodes, snapshots, pool)
    return CutResult(
        report,
        {
            node: failures.get(node, why) + ("" if cleared[node] is None else f"; {cleared[node]}")
            for node in nodes
        },
    )


def _why_unusable(
    failures: Mapping[str, str], report: PauseReport, interrupted: str | None
) -> str | None:
    if interrupted is not None:
        return f"{interrupted}: the applications were unpaused before every node's snapshot"
    if failures:
        node, reason = sorted(failures.items())[0]
        return (
            f"the snapshot on {node} failed ({reason}); a cluster-wide snapshot needs every "
            "node, so the snapshots taken were cleared"
        )
    stuck = [i for i in report.instances if not i.unpaused]
    if stuck:
        return (
            f"application instance {stuck[0].instance} could not be unpaused ({stuck[0].error}): "
            "call Admin.Unpause on it; the snapshots taken were cleared"
        )
    return None


def _clear_all(
    nodes: Sequence[str], snapshots: NodeSnapshots, pool: Executor
) -> dict[str, str | None]:
    """Clear the tag on every node; what could not be cleared is said, not raised."""
    futures = {pool.submit(snapshots.clear, node): node for node in nodes}
    wait(futures)
    outcome: dict[str, str | None] = {}
    for future, node in futures.items():
        error = future.exception()
        outcome[node] = None
        if error is not None:
            outcome[node] = (
                f"clearing its snapshot also failed ({_reason(error)}): clear it by hand"
            )
            log.error("snapshot not cleared node=%s error=%s", node, _reason(error))
    return outcome
