"""The daemon with 10,000 jobs: memory, CPU while idle, and lateness of 1,000-job bursts.

The daemon runs in this process with the real clock and a runner that returns at once, so the
figures are the scheduler's own: its heap of timers, per-cluster queues and worker pool. The
baseline for lateness is a plain `sched` loop firing 1,000 callbacks due at the same instant,
run in the same process. They take turns: burst 1 of the daemon's, then one of the baseline's,
then burst 2 ..., BENCH_PAIRS (default 5) pairs, each timed by its p99 lateness. Aims: under
150 MB, under 1% of a core idle, p99 lateness under 1 s.

BENCH_SCHEDULER_IDLE_S sets the idle period (default 30 s).
"""

from __future__ import annotations

import gc
import os
import resource
import sched
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.compare import PAIRS, Runs, report
from cassy_scheduler.clock import SystemClock
from cassy_scheduler.config.loader import load_config
from cassy_scheduler.config.model import JobConfig
from cassy_scheduler.records import Failure, Outcome, RunResult
from cassy_scheduler.scheduling.daemon import Daemon

JOBS = 10_000
BURST = 1_000
CLUSTERS = 100
GAP_S = 20  # between bursts: room for one burst of the baseline's


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _InstantRunner:
    """Returns at once, noting how late each run was invoked, by the time it was due."""

    def __init__(self) -> None:
        self.lateness: dict[datetime, list[float]] = {}
        self.skipped = 0
        self._changed = threading.Condition()

    def run(
        self, job: JobConfig, scheduled_for: datetime, stop: threading.Event | None = None
    ) -> RunResult:
        late = (datetime.now(UTC) - scheduled_for).total_seconds()
        with self._changed:
            self.lateness.setdefault(scheduled_for, []).append(late)
            self._changed.notify_all()
        return RunResult(job.name, job.type, scheduled_for, Outcome.SUCCEEDED)

    def skip(
        self, job: JobConfig, scheduled_for: datetime, reason: str, failure: Failure
    ) -> RunResult:
        with self._changed:
            self.skipped += 1
            self._changed.notify_all()
        return RunResult(job.name, job.type, scheduled_for, Outcome.SKIPPED)

    def wait_for_burst(self, due: datetime, timeout_s: float) -> list[float]:
        """The lateness of the burst due at `due`, once all of it ran (or the timeout)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.lateness.get(due, [])) >= BURST, timeout_s)
            return list(self.lateness.get(due, []))


class _NoHistory:
    def last_scheduled(self) -> dict[str, datetime]:
        return {}


def _bursts(first: datetime, count: int) -> list[datetime]:
    return [first + timedelta(seconds=GAP_S * number) for number in range(count)]


def _config_text(first_burst: datetime, bursts: int, state_dir: Path) -> str:
    """`bursts` groups of 1,000 jobs, each due together, GAP_S apart from `first_burst`; the
    rest of the 10,000 daily, at hours far from now."""
    quiet_hour = (first_burst.hour + 12) % 24
    due = [
        f"{t.second} {t.minute} {t.hour} {t.day} {t.month} *" for t in _bursts(first_burst, bursts)
    ]
    parts = [
        f'[scheduler]\nstate_dir = "{state_dir}"\nmax_parallel_runs = 8\n',
        '[server]\naddress = "127.0.0.1:20051"\n',
    ]
    for i in range(JOBS):
        schedule = due[i // BURST] if i < BURST * bursts else f"{i % 60} {quiet_hour} * * *"
        kind = ("snapshot", "incremental")[i % 2]
        parts.append(
            f'[jobs.job-{i:05d}]\ntype = "{kind}"\ncluster_name = "c{i % CLUSTERS}"\n'
            f'schedule = "{schedule}"\nwhen_no_snapshot = "take-snapshot"\n'
            if kind == "incremental"
            else f'[jobs.job-{i:05d}]\ntype = "{kind}"\ncluster_name = "c{i % CLUSTERS}"\n'
            f'schedule = "{schedule}"\n'
        )
    return "\n".join(parts)


def _baseline_lateness(count: int, lead_s: float) -> list[float]:
    """A plain sched loop: `count` callbacks due at one instant, lateness of each."""
    loop = sched.scheduler(time.time, time.sleep)
    target = time.time() + lead_s
    lateness: list[float] = []
    for _ in range(count):
        loop.enterabs(target, 0, lambda: lateness.append(time.time() - target))
    loop.run()
    return lateness


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _pairs() -> int:
    pairs = int(os.environ.get("BENCH_PAIRS", str(PAIRS)))
    if not 1 <= pairs <= JOBS // BURST:
        raise SystemExit(f"BENCH_PAIRS must be 1 to {JOBS // BURST}: {JOBS} jobs make the bursts")
    return pairs


def _idle(seconds: float) -> tuple[float, float]:
    """CPU seconds this process used over `seconds` of doing nothing, and the wall time."""
    gc.collect()
    cpu_before, wall_before = _cpu_s(), time.monotonic()
    time.sleep(seconds)
    return _cpu_s() - cpu_before, time.monotonic() - wall_before


def main() -> None:
    idle_s = float(os.environ.get("BENCH_SCHEDULER_IDLE_S", "30"))
    pairs = _pairs()
    ours, baseline = Runs("daemon, p99 lateness"), Runs("plain sched loop")
    every_run: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        work = Path(tmp)
        rss_before = _rss_mb()
        path = work / "scheduler.toml"
        # A first load, with the bursts far away, says how long loading takes; the second
        # puts the first burst after the idle period, counted from when loading will be done.
        path.write_text(_config_text(datetime.now(UTC) + timedelta(days=1), pairs, work), "utf-8")
        started = time.perf_counter()
        load_config(path)
        load_s = time.perf_counter() - started
        lead = timedelta(seconds=2 * load_s + idle_s + 15)
        first = (datetime.now(UTC) + lead).replace(microsecond=0)
        path.write_text(_config_text(first, pairs, work / "state"), encoding="utf-8")
        config = load_config(path)
        runner = _InstantRunner()
        daemon = Daemon(config, runner, _NoHistory(), SystemClock())
        started = time.perf_counter()
        daemon.start()
        plan_s = time.perf_counter() - started
        rss_loaded = _rss_mb()
        thread = threading.Thread(target=daemon.serve, name="daemon")
        thread.start()
        time.sleep(1)  # the loop's first turn
        cpu_idle, wall_idle = _idle(idle_s)
        remaining = (first - datetime.now(UTC)).total_seconds()
        print(
            f"waiting {remaining:.0f} s for the first of {pairs} bursts of {BURST} runs", flush=True
        )
        for due in _bursts(first, pairs):
            wait_s = (due - datetime.now(UTC)).total_seconds() + 120
            lateness = runner.wait_for_burst(due, wait_s)
            if len(lateness) < BURST:
                print(
                    f"burst incomplete: {len(lateness)} of {BURST} runs, {runner.skipped} skipped"
                )
                break
            ours.seconds.append(_percentile(lateness, 0.99))
            every_run += lateness
            baseline.seconds.append(_percentile(_baseline_lateness(BURST, 1.0), 0.99))
        daemon.request_stop()
        thread.join(60)

    print(f"jobs loaded:               {len(config.jobs)}")
    print(f"config load:               {load_s:6.2f} s   daemon start (plan): {plan_s:.2f} s")
    print(f"RSS before loading:        {rss_before:6.1f} MB")
    print(
        f"RSS with {JOBS} jobs:      {rss_loaded:6.1f} MB  (delta {rss_loaded - rss_before:.1f} MB;"
        " aim < 150 MB)"
    )
    print(
        f"idle CPU over {wall_idle:.0f} s:       {cpu_idle:6.3f} s = "
        f"{100 * cpu_idle / wall_idle:.3f}% of a core  (aim < 1%)"
    )
    if not ours.seconds:
        return
    report(f"p99 lateness of a burst of {BURST} runs due at once (aim < 1 s)", ours, baseline)
    print(
        f"  every run of ours: p50 {_percentile(every_run, 0.5) * 1000:.1f} ms, max "
        f"{max(every_run) * 1000:.1f} ms, mean {statistics.fmean(every_run) * 1000:.1f} ms "
        "(the daemon adds per-cluster queues, a worker pool and next-fire computation)"
    )
