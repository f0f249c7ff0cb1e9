"""When a target hears about a run: always, on failure, or on a change of state.

`failure` covers failed, timed out and interrupted runs and runs skipped because the previous
run of the job still runs. `change` sends the first failure after a success (or the first run
ever failing) and the first success after a failure; skipped runs count for neither state,
since the run still going (or the next one) decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from cassy_scheduler.config.targets import NotifyWhen
from cassy_scheduler.scheduling.history import Outcome, RunRecord
from cassy_scheduler.scheduling.runner import Failure, RunResult

_BAD = frozenset({Outcome.FAILED, Outcome.TIMED_OUT, Outcome.INTERRUPTED})


class State(Enum):
    GOOD = "good"
    BAD = "bad"
    NEITHER = "neither"


def is_failure(result: RunResult) -> bool:
    """Does the `failure` policy report this run?"""
    if result.outcome in _BAD:
        return True
    return result.outcome is Outcome.SKIPPED and result.failure is Failure.ALREADY_RUNNING


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


def should_send(when: NotifyWhen, result: RunResult, previous: State | None) -> bool:
    """Decide for one target; `previous` is the job's state before this run (change only)."""
    if when is NotifyWhen.ALWAYS:
        return True
    if when is NotifyWhen.FAILURE:
        return is_failure(result)
    current = state_of(result.outcome)
    if current is State.BAD:
        return previous is not State.BAD
    if current is State.GOOD:
        return previous is State.BAD
    return False
