"""The scheduler's config file: its models, loading with errors that name file, line and key."""

from __future__ import annotations

from cassy_scheduler.config.checks import check_config
from cassy_scheduler.config.loader import load_config, parse_config
from cassy_scheduler.config.model import (
    DEFAULT_ADDRESS,
    ClusterRef,
    JobConfig,
    JobType,
    RuntimeConfig,
    SchedulerConfig,
    ServerConfig,
    SourceLocation,
    WhenNoSnapshot,
)
from cassy_scheduler.config.targets import NotifyTarget, NotifyUse, NotifyWhen
from cassy_scheduler.configfile.durations import DurationError, format_duration, parse_duration
from cassy_scheduler.configfile.errors import ConfigError, ConfigProblem
from cassy_scheduler.configfile.secrets import Secret
from cassy_scheduler.timetable import MissedRunPolicy
from cassy_scheduler.tls import TlsConfig

__all__ = [
    "DEFAULT_ADDRESS",
    "ClusterRef",
    "ConfigError",
    "ConfigProblem",
    "DurationError",
    "JobConfig",
    "JobType",
    "MissedRunPolicy",
    "NotifyTarget",
    "NotifyUse",
    "NotifyWhen",
    "RuntimeConfig",
    "SchedulerConfig",
    "Secret",
    "ServerConfig",
    "SourceLocation",
    "TlsConfig",
    "WhenNoSnapshot",
    "check_config",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
]
