"""A measured side run in a process of its own, so that its CPU time and peak memory are its
own and not the parent's: the child prints one JSON line, the parent reads it."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def print_usage(started: float) -> None:
    """The child's last line: wall seconds since `started`, CPU seconds, peak RSS in MiB."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    measured = {
        "seconds": time.perf_counter() - started,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,
    }
    print(json.dumps(measured), flush=True)


def run_child(module: str, *args: str) -> dict[str, float]:
    """Run `python -m module args...` and return what its `print_usage` printed."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {args[0]} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
