"""`python -m examples.pausable_app --listen HOST:PORT --cassandra HOST --keyspace KS`.

Writes pairs of rows to Cassandra continuously and serves rpc.Admin, until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from examples.pausable_app.app import AppConfig, AppStartError, start_app
from examples.pausable_app.writer import WriterSettings


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.pausable_app")
    parser.add_argument("--listen", required=True, help="rpc.Admin address, host:port")
    parser.add_argument("--cassandra", required=True, action="append", help="contact point")
    parser.add_argument("--keyspace", required=True)
    parser.add_argument("--table", default="pairs")
    parser.add_argument("--replication-factor", type=int, default=3)
    parser.add_argument("--consistency", default="QUORUM", help="ONE, QUORUM, ALL, ...")
    parser.add_argument("--instance-id", help="prefix of every row id (default: --listen)")
    parser.add_argument("--pairs-per-second", type=float, default=40.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--gap-ms", type=float, default=5.0, help="time between the halves")
    parser.add_argument("--pause-delay", type=float, default=0.0, help="test: slow Pause (s)")
    parser.add_argument("--refuse-pause", action="store_true", help="test: refuse Pause")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("cassandra").setLevel(logging.WARNING)
    config = AppConfig(
        listen=args.listen,
        cassandra=tuple(args.cassandra),
        writer=WriterSettings(
            instance_id=args.instance_id or args.listen,
            keyspace=args.keyspace,
            table=args.table,
            pairs_per_second=args.pairs_per_second,
            workers=args.workers,
            gap_s=args.gap_ms / 1000,
        ),
        replication_factor=args.replication_factor,
        consistency=args.consistency,
        pause_delay_s=args.pause_delay,
        refuse_pause=args.refuse_pause,
    )
    try:
        running = start_app(config)
    except AppStartError as exc:
        logging.getLogger("pausable_app").error("%s", exc)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
