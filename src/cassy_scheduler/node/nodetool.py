"""The nodetool commands the server needs, as typed calls on one node.

Cassandra offers no CQL statement to flush, snapshot or clear snapshots, so these go through
JMX by way of nodetool. Output meant for people (`status`) is parsed here,
loosely enough to survive column changes between versions.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from cassy_scheduler.node.datadir import validate_tag
from cassy_scheduler.node.executor import NodeEndpoint, NodeExecutor

_log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 300.0
# A ring row: two-letter status/state, the address, ..., the host id (or '?').
_STATUS_ROW = re.compile(r"^(?P<status>[UD])(?P<state>[NLJM])\s+(?P<address>\S+)\s+(?P<rest>.*)$")
_HOST_ID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")

Status = Literal["U", "D"]
State = Literal["N", "J", "L", "M"]


@dataclass(frozen=True)
class RingNode:
    """One node as `nodetool status` shows it: 'U'/'D' and Normal/Joining/Leaving/Moving."""

    address: str
    status: Status
    state: State
    host_id: str | None

    @property
    def code(self) -> str:
        """The two letters nodetool prints, e.g. 'UN' or 'DN'."""
        return self.status + self.state

    @property
    def is_up_normal(self) -> bool:
        return self.code == "UN"


def _strip_port(address: str) -> str:
    """'127.0.0.1:7000' (printed with --print-port) to '127.0.0.1'; IPv6 and bare IPs kept."""
    if address.startswith("["):
        return address[1 : address.index("]")] if "]" in address else address
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host
    return address


def parse_status(output: str) -> list[RingNode]:
    """The ring rows of `nodetool status` output, in the order printed, every datacenter."""
    nodes: list[RingNode] = []
    for line in output.splitlines():
        match = _STATUS_ROW.match(line.strip())
        if match is None:
            continue
        host_id = _HOST_ID.search(match["rest"])
        nodes.append(
            RingNode(
                address=_strip_port(match["address"]),
                status=cast(Status, match["status"]),
                state=cast(State, match["state"]),
                host_id=host_id.group(0) if host_id else None,
            )
        )
    return nodes


def parse_data_paths(output: str) -> list[Path]:
    """Data file directories from `nodetool datapaths -F json`: each table path's grandparent."""
    try:
        document = json.loads(output)
    except json.JSONDecodeError as exc:
        raise ValueError(f"nodetool datapaths printed no JSON: {output[:200]!r}") from exc
    directories: list[Path] = []
    for tables in document.values():
        for paths in tables.values():
            for path in paths:
                root = Path(path).parent.parent
                if root not in directories:
                    directories.append(root)
    return directories


class Nodetool:
    """nodetool commands against one node, through an executor."""

    def __init__(
        self,
        executor: NodeExecutor,
        endpoint: NodeEndpoint,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._executor = executor
        self._endpoint = endpoint
        self._timeout_s = timeout_s

    @property
    def endpoint(self) -> NodeEndpoint:
        return self._endpoint

    def _run(self, *args: str, timeout_s: float | None = None) -> str:
        return self._executor.run(self._endpoint, args, timeout_s or self._timeout_s)

    def run(self, args: Sequence[str]) -> str:
        """Any command, its output as nodetool printed it (the node program runs these)."""
        return self._run(*args)

    def flush(self, keyspaces: Sequence[str] = ()) -> None:
        """Flush the keyspaces' memtables, in one nodetool call whatever their number.

        `nodetool flush` takes one keyspace (then tables), so several keyspaces are flushed
        by flushing every keyspace: one more memtable written is cheaper than one more JVM
        started (a second of CPU each).
        """
        if len(keyspaces) == 1:
            self._run("flush", "--", keyspaces[0])
        else:
            self._run("flush")

    def snapshot(self, tag: str, keyspaces: Sequence[str]) -> None:
        """Take snapshot `tag` of the keyspaces (all keyspaces when none is given).

        Cassandra 5.0 flushes before it snapshots unless told `--skip-flush`, so the snapshot
        holds every write acknowledged before it started. A tag that already exists fails.
        """
        self._run("snapshot", "-t", validate_tag(tag), "--", *keyspaces)
        _log.info(
            "snapshot taken node=%s tag=%s keyspaces=%d",
            self._endpoint.address,
            tag,
            len(keyspaces),
        )

    def clear_snapshot(self, tag: str) -> None:
        """Remove snapshot `tag` from every keyspace; a tag that does not exist is fine."""
        self._run("clearsnapshot", "-t", validate_tag(tag))

    def clear_all_snapshots(self) -> None:
        """Remove every snapshot of every keyspace on the node."""
        self._run("clearsnapshot", "--all")

    def status(self) -> list[RingNode]:
        """The ring as this node sees it (5.0's `status` has no machine-readable format)."""
        return parse_status(self._run("status"))

    def data_file_directories(self) -> list[Path]:
        """The node's data file directories, first (the one Cassy records) first."""
        return parse_data_paths(self._run("datapaths", "-F", "json", "--", "system_schema"))
