"""When a target hears about a run: always, on failure, or on a change of state.

`failure` covers failed, timed out and interrupted runs, and a run skipped because the
previous run of the job still runs once it is the second skip in a row: one overlap is
routine on a busy cluster (the run still going reports its own outcome), two mean the job
keeps missing its schedule; a longer streak is not repeated. `change` sends the first failure
after a success (or the first run ever failing) and the first success after a failure;
skipped runs count for neither state, since the run still going (or the next one) decides.
`always` sends every run, skips included.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from cassy_scheduler.config.targets import NotifyWhen
from cassy_scheduler.records import Failure, Outcome, RunRecord, RunResult

_BAD = frozenset({Outcome.FAILED, Outcome.TIMED_OUT, Outcome.INTERRUPTED})


class State(Enum):
    GOOD = "good"
    BAD = "bad"
    NEITHER = "neither"


SKIPS_WORTH_A_NOTICE = 2


def is_overlap(result: RunResult) -> bool:
    """A run skipped because the job's previous run still runs."""
    return result.outcome is Outcome.SKIPPED and result.failure is Failure.ALREADY_RUNNING


def is_failure(result: RunResult, skips_before: int = 0) -> bool:
    """Does the `failure` policy report this run? `skips_before` counts the job's skipped
    runs in a row right before this one (only overlaps ask for it)."""
    if result.outcome in _BAD:
        return True
    return is_overlap(result) and skips_before + 1 == SKIPS_WORTH_A_NOTICE


def skips_before(runs: Iterable[RunRecord], run_id: int | None) -> int:
    """How many runs in a row before `run_id` were overlap skips (`runs` newest first); a
    skip recorded without its cause (by an older version) counts as one, any other skip
    (missed while down, the cluster busy) ends the row."""
    count = 0
    for run in runs:
        if run_id is not None and run.run_id >= run_id:
            continue
        overlap = run.skipped_for in (None, Failure.ALREADY_RUNNING)
        if run.outcome is not Outcome.SKIPPED or not overlap:
            break
        count += 1
    return count


def state_of(outcome: Outcome) -> State:
    """A run's part in the `change` policy's state."""
    if outcome is Outcome.SUCCEEDED:
        return State.GOOD
    return State.BAD if outcome in _BAD else State.NEITHER


def previous_state(runs: Iterable[RunRecord], before_run_id: int | None) -> State | None:
    """The state of the latest run (newest first in `runs`) before `before_run_id`."""
    for run in runs:
        if before_run_id is not None and run.run_id >= before_run_id:
            continue
        state = state_of(run.outcome)
        if state is not State.NEITHER:
            return state
    return None


def should_send(
    when: NotifyWhen, result: RunResult, previous: State | None, skipped_before: int = 0
) -> bool:
    """Decide for one target; `previous` is the job's state before this run (change only),
    `skipped_before` the skips in a row before it (failure only)."""
    if when is NotifyWhen.ALWAYS:
        return True
    if when is NotifyWhen.FAILURE:
        return is_failure(result, skipped_before)
    current = state_of(result.outcome)
    if current is State.BAD:
        return previous is not State.BAD
    if current is State.GOOD:
        return previous is State.BAD
    return False
