"""`python -m tools.localcluster`: start, inspect and stop a local cluster from a shell.

python -m tools.localcluster start --nodes 3 --root DIR
python -m tools.localcluster status --root DIR
python -m tools.localcluster nodetool --root DIR 2 status
python -m tools.localcluster stop --root DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from tools.localcluster.artifacts import fetch
from tools.localcluster.cluster import LocalCluster
from tools.localcluster.errors import LocalClusterError
from tools.localcluster.java import find_java
from tools.localcluster.nodeconfig import nodetool_command

DEFAULT_ROOT = Path(".localcluster")


def _cmd_fetch(args: argparse.Namespace) -> int:
    jars = fetch(args.version)
    print(f"Cassandra {jars.version}: {jars.lib_dir}")
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    cluster = LocalCluster(
        args.root,
        args.nodes,
        cluster_name=args.cluster_name,
        first_octet=args.first_octet,
        heap_mb=args.heap_mb,
        die_with_parent=False,
    )
    print(f"starting {args.nodes} node(s) of Cassandra {cluster.jars.version} under {cluster.root}")
    cluster.start_all(timeout=args.timeout)
    _print_nodes(cluster, as_json=False)
    here = Path(__file__).with_name("nodetool")
    print(f"\nnodetool: {here} -h 127.0.0.1 -p {cluster.specs[0].jmx_port} status")
    print(f"stop:     python -m tools.localcluster stop --root {args.root}")
    return 0


def _print_nodes(cluster: LocalCluster, as_json: bool) -> None:
    nodes = cluster.describe()
    running = cluster.running()
    for node in nodes:
        node["running"] = running[str(node["name"])] is not None
    if as_json:
        print(json.dumps(nodes, indent=2))
        return
    for node in nodes:
        state = f"pid {node['pid']}" if node["running"] else "stopped"
        print(
            f"{node['name']}  cql {node['address']}:{node['cql_port']}  "
            f"jmx 127.0.0.1:{node['jmx_port']}  {state}  data {node['data_dir']}"
        )


def _cmd_status(args: argparse.Namespace) -> int:
    cluster = LocalCluster.attach(args.root)
    _print_nodes(cluster, as_json=args.json)
    return 0 if all(pid is not None for pid in cluster.running().values()) else 1


def _cmd_stop(args: argparse.Namespace) -> int:
    cluster = LocalCluster.attach(args.root)
    cluster.stop_all(graceful=not args.kill)
    print(f"stopped the local cluster under {args.root}")
    return 0


def _cmd_nodetool(args: argparse.Namespace) -> int:
    cluster = LocalCluster.attach(args.root)
    print(cluster.nodetool(args.node, *args.args), end="")
    return 0


def _nodetool_exec(args: list[str]) -> int:
    """Behave exactly like `nodetool`: arguments (-h, -p, the command) pass through untouched."""
    command = [*nodetool_command(find_java(), fetch()), *args]
    os.execv(command[0], command)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.localcluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True)

    def with_root(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--root",
            type=Path,
            default=DEFAULT_ROOT,
            help=f"the cluster's directory (default {DEFAULT_ROOT})",
        )
        return p

    fetch_p = verbs.add_parser("fetch", help="resolve Cassandra's jars into the cache")
    fetch_p.add_argument("--version", help="an exact 5.0.x version (default: newest 5.0.x)")
    fetch_p.set_defaults(func=_cmd_fetch)

    start_p = with_root(verbs.add_parser("start", help="start a cluster and wait until it is UN"))
    start_p.add_argument("--nodes", type=int, default=1, choices=(1, 2, 3))
    start_p.add_argument("--cluster-name", default="localcluster")
    start_p.add_argument(
        "--first-octet", type=int, default=1, help="node n listens on 127.0.0.<first-octet + n - 1>"
    )
    start_p.add_argument("--heap-mb", type=int, default=512)
    start_p.add_argument("--timeout", type=float, default=300)
    start_p.set_defaults(func=_cmd_start)

    status_p = with_root(verbs.add_parser("status", help="nodes, addresses, PIDs"))
    status_p.add_argument("--json", action="store_true")
    status_p.set_defaults(func=_cmd_status)

    stop_p = with_root(verbs.add_parser("stop", help="stop the processes the cluster started"))
    stop_p.add_argument("--kill", action="store_true", help="SIGKILL instead of a clean stop")
    stop_p.set_defaults(func=_cmd_stop)

    nodetool_p = with_root(verbs.add_parser("nodetool", help="nodetool against node N"))
    nodetool_p.add_argument("node", help="node number, name or address")
    nodetool_p.add_argument("args", nargs=argparse.REMAINDER)
    nodetool_p.set_defaults(func=_cmd_nodetool)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["nodetool-exec"]:  # used by the `nodetool` wrapper script
            return _nodetool_exec(argv[1:])
        args = _parser().parse_args(argv)
        return int(args.func(args))
    except LocalClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
