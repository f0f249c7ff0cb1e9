"""Ours against a baseline, run in turns (A B A B ...), so that whatever else the machine does
weighs on both alike; reported as medians with their range and a ratio said in words."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PAIRS = 5


@dataclass
class Runs:
    """The wall times of one side, in seconds, in the order they ran."""

    name: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def summary(self) -> str:
        low, high = min(self.seconds), max(self.seconds)
        return f"{self.median:7.3f} s  ({low:.3f} to {high:.3f}, {len(self.seconds)} runs)"


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def in_turns(
    ours: Callable[[], object],
    baseline: Callable[[], object],
    *,
    names: tuple[str, str],
    pairs: int = PAIRS,
    before_ours: Callable[[], object] = lambda: None,
    before_baseline: Callable[[], object] = lambda: None,
) -> tuple[Runs, Runs]:
    """Time `ours` then `baseline`, `pairs` times; the `before_` steps run untimed before
    each run of their side (to put the node back as that run expects it)."""
    mine, theirs = Runs(names[0]), Runs(names[1])
    for _ in range(pairs):
        before_ours()
        mine.seconds.append(timed(ours))
        before_baseline()
        theirs.seconds.append(timed(baseline))
    return mine, theirs


TIMES = "\u00d7"  # the multiplication sign, as in "2.1 times slower" written short


def ratio(ours: Runs, baseline: Runs) -> str:
    """Ours/baseline of the medians with its direction in words: 2.1x slower than cp."""
    value = ours.median / baseline.median
    if 0.95 <= value <= 1.05:
        return f"{value:.2f}{TIMES} (as fast as {baseline.name}, within 5 %)"
    if value > 1:
        return f"{value:.2f}{TIMES} ({value:.1f}{TIMES} slower than {baseline.name})"
    return f"{value:.2f}{TIMES} ({1 / value:.1f}{TIMES} faster than {baseline.name})"


def report(title: str, ours: Runs, baseline: Runs) -> None:
    print(f"{title}")
    print(f"  {ours.name:<34} {ours.summary()}")
    print(f"  {baseline.name:<34} {baseline.summary()}")
    print(f"  ours/baseline {ratio(ours, baseline)}", flush=True)
