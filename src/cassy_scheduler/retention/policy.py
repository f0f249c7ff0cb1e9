"""Which backups a retention policy keeps: restic's rules, plus the rails that make a prune safe.

Pure: the caller gathers what the server knows of a job's backups, this module decides, and
nothing here talks to a server or a store. The unit is a *chain*: a snapshot together with
the incrementals that extend it, since incrementals live and die with their snapshot.

The rules count only chains whose snapshot every node COMPLETED ("good" ones); each rule
walks them newest first (restic's semantics):
- keep_last N: the N newest;
- keep_hourly/daily/weekly/monthly/yearly N: the newest chain of each of the N most recent
  hours (days, ISO weeks, months, years) that have one, in the policy's time zone;
- keep_within D: every chain taken less than D before the newest good one (not before now:
  a scheduler that stopped for a month must not come back to an empty bucket);
- a calendar rule that finds fewer buckets than it may keep also keeps the oldest good chain
  (restic 0.17's rule), so a young job's first backup ages into the monthly or yearly one.
A chain kept by any rule stays. Then the rails, which no rule can overrule:
- the newest good chain stays, and so do the newest good ones up to `min_keep`;
- a chain the cluster's current incrementals extend stays, good or not;
- a chain with a backup running or a restore reading it is held, whatever else applies;
- a chain that is not good is neither kept nor counted: it goes once `failed_grace` has
  passed since it was taken (it may still be finishing, or someone may be looking into it);
- a failed incremental inside a kept chain has its record removed after `failed_grace`; its
  files are left to die with the chain, since a later incremental may have written the same
  keys again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum

#: What the calendar rules bucket by, each from an instant in the policy's zone.
_BUCKETS: dict[str, Callable[[datetime], tuple[int, ...]]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


@dataclass(frozen=True)
class RetentionPolicy:
    """A job's keep_* rules and rails, as the config file gave them (None: rule not set)."""

    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: timedelta | None = None
    min_keep: int = 1
    failed_grace: timedelta = timedelta(days=7)

    @property
    def has_rules(self) -> bool:
        counts = (
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        )
        return any(c is not None for c in counts) or self.keep_within is not None

    def describe(self) -> str:
        """The rules in the config's words, for previews and notices."""
        parts = [
            f"keep_{name} = {count}"
            for name, count in (
                ("last", self.keep_last),
                ("hourly", self.keep_hourly),
                ("daily", self.keep_daily),
                ("weekly", self.keep_weekly),
                ("monthly", self.keep_monthly),
                ("yearly", self.keep_yearly),
            )
            if count is not None
        ]
        if self.keep_within is not None:
            parts.append(f"keep_within = {_days(self.keep_within)}")
        parts.append(f"min_keep = {self.min_keep}")
        return ", ".join(parts)


class State(StrEnum):
    """Where a backup stands, as far as retention cares."""

    GOOD = "good"  # every node COMPLETED
    RUNNING = "running"  # a node is INITIALIZED or STARTED
    INCOMPLETE = "incomplete"  # a node FAILED (or the rows are otherwise not whole)
    DELETING = "deleting"  # a deletion began and did not finish


@dataclass(frozen=True)
class Incremental:
    """An incremental backup within a chain."""

    created_at: datetime
    state: State


@dataclass(frozen=True)
class Chain:
    """A snapshot and the incrementals that extend it (`created_at` is the snapshot's)."""

    snapshot_id: str
    created_at: datetime
    state: State
    incrementals: tuple[Incremental, ...] = ()
    restoring: bool = False  # a restore from it has not finished
    stored_bytes: int | None = None


class Verdict(StrEnum):
    KEEP = "keep"
    DELETE = "delete"


@dataclass(frozen=True)
class Decision:
    """What becomes of one chain, and every reason for it (the rules that keep it, or why it
    goes); `incrementals` are the failed incrementals of a kept chain whose records go."""

    chain: Chain
    verdict: Verdict
    reasons: tuple[str, ...]
    incrementals: tuple[Incremental, ...] = field(default=())

    @property
    def why(self) -> str:
        return "; ".join(self.reasons)


def decide(
    chains: Iterable[Chain],
    policy: RetentionPolicy,
    *,
    now: datetime,
    zone: tzinfo,
    extended: str | None = None,
) -> list[Decision]:
    """One decision per chain, newest first. `extended` is the snapshot id the cluster's
    newest incremental extends (kept whatever the rules say); `now` dates failed ones."""
    ordered = sorted(chains, key=lambda c: (c.created_at, c.snapshot_id), reverse=True)
    good = [c for c in ordered if c.state is State.GOOD]
    kept = _by_rules(good, policy, zone)
    _rails(good, kept, policy, extended)
    decisions: list[Decision] = []
    for chain in ordered:
        held = _held(chain)
        if held is not None:
            decisions.append(Decision(chain, Verdict.KEEP, (held,)))
        elif chain.state is State.GOOD:
            reasons = kept.get(chain.snapshot_id)
            if reasons:
                stale = tuple(
                    i
                    for i in chain.incrementals
                    if i.state is not State.GOOD and now - i.created_at > policy.failed_grace
                )
                decisions.append(Decision(chain, Verdict.KEEP, tuple(reasons), stale))
            else:
                decisions.append(Decision(chain, Verdict.DELETE, ("no rule keeps it",)))
        elif chain.state is State.DELETING:
            decisions.append(Decision(chain, Verdict.DELETE, ("its deletion began earlier",)))
        elif chain.snapshot_id == extended:  # not good, yet what the incrementals build on
            decisions.append(Decision(chain, Verdict.KEEP, ("the current incrementals extend it",)))
        else:
            decisions.append(_not_good(chain, policy, now))
    return decisions


def _by_rules(good: Sequence[Chain], policy: RetentionPolicy, zone: tzinfo) -> dict[str, list[str]]:
    kept: dict[str, list[str]] = {c.snapshot_id: [] for c in good}
    if policy.keep_last:
        for chain in good[: policy.keep_last]:
            kept[chain.snapshot_id].append("keep_last")
    for name, bucket in _BUCKETS.items():
        count: int | None = getattr(policy, f"keep_{name}")
        if not count:
            continue
        last: tuple[int, ...] | None = None
        for chain in good:
            value = bucket(chain.created_at.astimezone(zone))
            if value != last:
                kept[chain.snapshot_id].append(f"keep_{name}")
                last = value
                count -= 1
                if count == 0:
                    break
        oldest = kept[good[-1].snapshot_id] if good else None
        if count and oldest is not None and f"keep_{name}" not in oldest:
            # restic 0.17: a rule not yet filled keeps the oldest too
            oldest.append(f"keep_{name} (the oldest, while the rule is unfilled)")
    if policy.keep_within is not None and good:
        since = good[0].created_at - policy.keep_within
        for chain in good:
            if chain.created_at > since:
                kept[chain.snapshot_id].append("keep_within")
    return kept


def _rails(
    good: Sequence[Chain],
    kept: dict[str, list[str]],
    policy: RetentionPolicy,
    extended: str | None,
) -> None:
    if not good:
        return
    _add(kept[good[0].snapshot_id], "the newest good backup")
    short = max(policy.min_keep, 1) - sum(1 for c in good if kept[c.snapshot_id])
    for chain in good:
        if short <= 0:
            break
        if not kept[chain.snapshot_id]:
            kept[chain.snapshot_id].append("min_keep")
            short -= 1
    if extended is not None and extended in kept:
        _add(kept[extended], "the current incrementals extend it")


def _add(reasons: list[str], reason: str) -> None:
    if reason not in reasons:
        reasons.append(reason)


def _held(chain: Chain) -> str | None:
    if chain.state is State.RUNNING or any(i.state is State.RUNNING for i in chain.incrementals):
        return "held: a backup of it is running"
    if chain.restoring:
        return "held: a restore from it is running"
    return None


def _not_good(chain: Chain, policy: RetentionPolicy, now: datetime) -> Decision:
    age = now - chain.created_at
    if age > policy.failed_grace:
        return Decision(
            chain, Verdict.DELETE, (f"not complete, and older than failed_grace ({_days(age)})",)
        )
    left = policy.failed_grace - age
    return Decision(
        chain,
        Verdict.KEEP,
        (f"not complete; not counted, removed after failed_grace (in {_days(left)})",),
    )


def _days(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours = rest // 3600
    if days and hours:
        return f"{days}d{hours}h"
    if days:
        return f"{days}d"
    return f"{hours}h" if hours else f"{max(rest // 60, 0)}m"
