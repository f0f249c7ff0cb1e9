"""The kinds of backup a job takes, in the config's words, and the protocol's type for each.

Its own module, below the config: run records and the CLI's argument types name a kind
without loading the config model (and the schedule parser under it)."""

from __future__ import annotations

from enum import StrEnum

from cassy_scheduler.protocol.types import BackupType


class JobType(StrEnum):
    """The kinds of backup a job takes, as written in the config file."""

    SNAPSHOT = "snapshot"
    CLUSTER_WIDE = "cluster-wide"
    INCREMENTAL = "incremental"
    #: Not a kind a job is written with: the retention run that follows a job's backups.
    PRUNE = "prune"

    @property
    def backup_type(self) -> BackupType:
        if self is JobType.PRUNE:
            raise ValueError("a prune takes no backup")
        return {
            JobType.SNAPSHOT: BackupType.NODE_SNAPSHOT,
            JobType.CLUSTER_WIDE: BackupType.CLUSTER_SNAPSHOT,
            JobType.INCREMENTAL: BackupType.NODE_INCREMENTAL,
        }[self]


#: The kinds a job is written with in the config file (a prune is a run, not a job).
JOB_KINDS = (JobType.SNAPSHOT, JobType.CLUSTER_WIDE, JobType.INCREMENTAL)
