"""A 3-node snapshot over SSH to S3, against the slowest node backed up alone.

A 3-node cluster on 127.0.0.61-63 holds about BENCH_SSH_MB (default 600) MB of
incompressible rows (one replica each, so a third per node). Each node's "host" is an
OpenSSH sshd on the node's address; the server reaches the nodes only through them, and
every node program sends its files to SeaweedFS's S3 gateway itself. In turns, BENCH_PAIRS
(default 5) pairs, each run against a fresh server and a fresh prefix (so every byte is
sent):
- ours:     one TakeBackup of all three nodes, until every node is COMPLETED
- baseline: each node alone (TakeBackup with that node as target), the slowest of the three;
            and the three alone added up (what one node after another would take)
Also printed: the server's CPU seconds per GB backed up, and the node side's (the node
programs, their sshd sessions and the nodetool JVMs they ran).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.compare import PAIRS, Runs, report
from bench.data import fill
from cassy_scheduler.client import CassyClient
from cassy_scheduler.outcome import wait_for_backup
from cassy_scheduler.protocol.types import BackupType
from tests.serverproc import NODETOOL, ServerProcess, server_head
from tools.localcluster import LocalCluster
from tools.peers.objectservers import (
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    ObjectServer,
    free_port,
    s3_create_bucket,
    start_seaweedfs,
)
from tools.peers.sshd import SshHosts

OCTET = 61
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int, *, children: bool) -> float:
    """CPU seconds of `pid` (with `children`: of the children it has reaped too)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + (cutime + cstime if children else 0)) / _TICK


@dataclass
class Run:
    seconds: float
    server_cpu: float
    node_cpu: float
    stored: int


class Bench:
    def __init__(self, work: Path, cluster: LocalCluster, hosts: SshHosts, s3: ObjectServer):
        self.work = work
        self.cluster = cluster
        self.hosts = hosts
        self.s3 = s3
        self.runs = 0

    def _config(self, work: Path, prefix: str) -> Path:
        work.mkdir(parents=True)
        path = work / "server.toml"
        storage = (
            f'[storage]\nuri = "s3://bench/{prefix}"\nendpoint = "{self.s3.endpoint}"\n'
            'region = "us-east-1"\naccess_key_id_env = "BENCH_S3_KEY"\n'
            'secret_access_key_env = "BENCH_S3_SECRET"\n'
        )
        path.write_text(server_head(storage) + "\n" + self.hosts.nodes_toml())
        return path

    def backup(self, targets: list[str]) -> Run:
        """A fresh server and prefix, one TakeBackup of `targets`, timed until COMPLETED."""
        for spec in self.cluster.specs:  # untimed: the previous run's snapshots go
            self.cluster.nodetool(spec.number, "clearsnapshot", "--all")
        self.runs += 1
        work = self.work / f"run{self.runs}"
        server = ServerProcess(self._config(work, f"run{self.runs}"), work / "server.log").start()
        assert server.proc is not None
        nodes_before = sum(_cpu(s.process.pid, children=True) for s in self.hosts.servers.values())
        try:
            with CassyClient(server.address, timeout_s=600) as client:
                cluster_id = client.register_cluster(self.cluster.addresses[0]).cluster_id
                cpu_before = _cpu(server.proc.pid, children=False)
                started = time.perf_counter()
                ack = client.take_backup(cluster_id, BackupType.NODE_SNAPSHOT, target_ips=targets)
                outcome = wait_for_backup(client, ack, timeout_s=1800, poll_interval_s=0.25)
                seconds = time.perf_counter() - started
                server_cpu = _cpu(server.proc.pid, children=False) - cpu_before
                if not outcome.succeeded:
                    raise RuntimeError(f"backup did not complete: {outcome}")
        finally:
            server.stop()
        deadline = time.monotonic() + 30  # the sessions end with the server's connections
        while any(s.sessions() for s in self.hosts.servers.values()):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        nodes_after = sum(_cpu(s.process.pid, children=True) for s in self.hosts.servers.values())
        return Run(seconds, server_cpu, nodes_after - nodes_before, self._stored(work))

    def _stored(self, work: Path) -> int:
        total = 0
        for line in (work / "server.log").read_text().splitlines():
            if "node backup completed" in line:
                fields = dict(p.split("=", 1) for p in line.split() if "=" in p)
                total += int(fields.get("bytes_sent", 0)) + int(fields.get("bytes_copied", 0))
        return total


def main() -> None:
    megabytes = int(os.environ.get("BENCH_SSH_MB", "600"))
    pairs = int(os.environ.get("BENCH_PAIRS", str(PAIRS)))
    os.environ["BENCH_S3_KEY"] = S3_ACCESS_KEY
    os.environ["BENCH_S3_SECRET"] = S3_SECRET_KEY
    with tempfile.TemporaryDirectory(prefix="bench-ssh-") as tmp:
        work = Path(tmp)
        cluster = LocalCluster(work / "cluster", 3, cluster_name="benchssh", first_octet=OCTET)
        s3 = hosts = None
        try:
            cluster.start_all(timeout=600)
            print(f"writing {megabytes} MB of rows to {', '.join(cluster.addresses)} ...")
            started = time.perf_counter()
            fill(cluster.addresses, megabytes)
            for spec in cluster.specs:
                cluster.nodetool(spec.number, "flush")
            print(f"  written in {time.perf_counter() - started:.0f} s", flush=True)
            s3 = start_seaweedfs(work)
            s3_create_bucket(s3, "bench")
            hosts = SshHosts(work / "ssh")
            port = free_port(cluster.addresses[0])
            for spec in cluster.specs:
                environment = {
                    "CASSY_NODE_JMX_PORT": str(spec.jmx_port),
                    "CASSY_NODE_NODETOOL": str(NODETOOL),
                }
                hosts.start(spec.address, environment, port=port)
            bench = Bench(work, cluster, hosts, s3)
            together, alone = Runs("3 nodes at once over SSH"), Runs("slowest node alone")
            in_a_row = Runs("the 3 nodes one after another")
            all_runs: list[Run] = []
            for _ in range(pairs):
                run = bench.backup([])
                all_runs.append(run)
                together.seconds.append(run.seconds)
                singles = [bench.backup([address]) for address in cluster.addresses]
                alone.seconds.append(max(single.seconds for single in singles))
                in_a_row.seconds.append(sum(single.seconds for single in singles))
            title = "3-node snapshot over SSH to S3 (request -> every node COMPLETED)"
            report(title, together, alone)
            report("the same, against each node alone in turn, added up", together, in_a_row)
            gigabytes = [run.stored / 1e9 for run in all_runs]
            server = sorted(r.server_cpu / g for r, g in zip(all_runs, gigabytes, strict=True))
            nodes = sorted(r.node_cpu / g for r, g in zip(all_runs, gigabytes, strict=True))
            print(
                f"  stored {all_runs[0].stored / 1e6:.0f} MB a run; CPU per GB backed up: "
                f"server {server[len(server) // 2]:.2f} s ({server[0]:.2f} to {server[-1]:.2f}), "
                f"node side {nodes[len(nodes) // 2]:.2f} s ({nodes[0]:.2f} to {nodes[-1]:.2f}): "
                f"the server's is {server[len(server) // 2] / nodes[len(nodes) // 2]:.1%} of "
                "the node side's",
                flush=True,
            )
        finally:
            if hosts is not None:
                hosts.stop()
            if s3 is not None:
                s3.stop()
            cluster.stop_all(graceful=False)


if __name__ == "__main__":
    main()
