"""Logging set-up for the long-running commands: one line per event, key=value fields."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        force=True,
    )
    # The driver is chatty at INFO about connection pools; its warnings still show.
    logging.getLogger("cassandra").setLevel(logging.WARNING)
