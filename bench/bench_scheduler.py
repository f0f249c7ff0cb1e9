"""The daemon with 10,000 jobs: memory, CPU while idle, and lateness of a 1,000-job burst.

The daemon runs in this process with the real clock and a runner that returns at once, so the
figures are the scheduler's own: its heap of timers, per-cluster queues and worker pool. The
baseline for lateness is a plain `sched` loop firing 1,000 callbacks due at the same instant,
run in the same process. Aims: under 150 MB, under 1% of a core idle, p99 lateness under 1 s.

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

from cassy_scheduler.clock import SystemClock
from cassy_scheduler.config.loader import load_config
from cassy_scheduler.config.model import JobConfig
from cassy_scheduler.records import Failure, Outcome, RunResult
from cassy_scheduler.scheduling.daemon import Daemon

JOBS = 10_000
BURST = 1_000
CLUSTERS = 100


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _InstantRunner:
    """Returns at once, noting how late each run was invoked."""

    def __init__(self, expected: int) -> None:
        self.lateness: list[float] = []
        self.skipped = 0
        self._lock = threading.Lock()
        self.done = threading.Event()
        self._expected = expected

    def run(
        self, job: JobConfig, scheduled_for: datetime, stop: threading.Event | None = None
    ) -> RunResult:
        late = (datetime.now(UTC) - scheduled_for).total_seconds()
        with self._lock:
            self.lateness.append(late)
            if len(self.lateness) >= self._expected:
                self.done.set()
        return RunResult(job.name, job.type, scheduled_for, Outcome.SUCCEEDED)

    def skip(
        self, job: JobConfig, scheduled_for: datetime, reason: str, failure: Failure
    ) -> RunResult:
        with self._lock:
            self.skipped += 1
        return RunResult(job.name, job.type, scheduled_for, Outcome.SKIPPED)


class _NoHistory:
    def last_scheduled(self) -> dict[str, datetime]:
        return {}


def _config_text(burst_at: datetime, state_dir: Path) -> str:
    """9,000 daily jobs at hours far from now, and 1,000 due together at `burst_at`."""
    quiet_hour = (burst_at.hour + 12) % 24
    burst = f"{burst_at.second} {burst_at.minute} {burst_at.hour} {burst_at.day} {burst_at.month} *"
    parts = [
        f'[scheduler]\nstate_dir = "{state_dir}"\nmax_parallel_runs = 8\n',
        '[server]\naddress = "127.0.0.1:20051"\n',
    ]
    for i in range(JOBS):
        schedule = burst if i < BURST else f"{i % 60} {quiet_hour} * * *"
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


def main() -> None:
    idle_s = float(os.environ.get("BENCH_SCHEDULER_IDLE_S", "30"))
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        work = Path(tmp)
        rss_before = _rss_mb()
        path = work / "scheduler.toml"
        # A first load, with the burst far away, says how long loading takes; the second
        # puts the burst after the idle period, counted from when loading will be done.
        path.write_text(_config_text(datetime.now(UTC) + timedelta(days=1), work), "utf-8")
        started = time.perf_counter()
        load_config(path)
        load_s = time.perf_counter() - started
        lead = timedelta(seconds=2 * load_s + idle_s + 15)
        burst_at = (datetime.now(UTC) + lead).replace(microsecond=0)
        path.write_text(_config_text(burst_at, work / "state"), encoding="utf-8")
        config = load_config(path)
        runner = _InstantRunner(BURST)
        daemon = Daemon(config, runner, _NoHistory(), SystemClock())
        started = time.perf_counter()
        daemon.start()
        plan_s = time.perf_counter() - started
        rss_loaded = _rss_mb()
        thread = threading.Thread(target=daemon.serve, name="daemon")
        thread.start()
        time.sleep(1)  # the loop's first turn
        gc.collect()
        cpu_before, wall_before = _cpu_s(), time.monotonic()
        time.sleep(idle_s)
        cpu_idle = _cpu_s() - cpu_before
        wall_idle = time.monotonic() - wall_before
        remaining = (burst_at - datetime.now(UTC)).total_seconds()
        print(f"waiting {remaining:.0f} s for the burst of {BURST} runs ...", flush=True)
        finished = runner.done.wait(remaining + 120)
        daemon.request_stop()
        thread.join(60)

    baseline = _baseline_lateness(BURST, 1.0)
    ours = runner.lateness
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
    if not finished or not ours:
        print(f"burst incomplete: {len(ours)} of {BURST} runs invoked, {runner.skipped} skipped")
        return
    p50, p99 = _percentile(ours, 0.5), _percentile(ours, 0.99)
    b50, b99 = _percentile(baseline, 0.5), _percentile(baseline, 0.99)
    print(
        f"burst lateness, {len(ours)} runs:  p50 {p50 * 1000:8.1f} ms  p99 {p99 * 1000:8.1f} ms"
        f"  max {max(ours) * 1000:8.1f} ms  (aim p99 < 1 s)"
    )
    print(f"baseline sched loop:       p50 {b50 * 1000:8.1f} ms  p99 {b99 * 1000:8.1f} ms")
    print(
        f"ratio p99 ours / baseline: {p99 / b99 if b99 > 0 else float('inf'):.1f}"
        f"  (ours adds per-cluster queues, a worker pool and next-fire computation)"
    )
    print(f"mean lateness:             {statistics.fmean(ours) * 1000:.1f} ms")
