"""The config file's shape, checked by pydantic at the edge; nothing past the loader sees these.

Every table refuses unknown keys, and values are strict (TOML is typed: "3" is not 3).
Fields a job may inherit are optional here; the loader applies [defaults] and built-in defaults.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from cassy_scheduler.config.model import DEFAULT_ADDRESS, RuntimeConfig, ServerConfig
from cassy_scheduler.configfile.fields import Duration
from cassy_scheduler.timetable import DEFAULT_TIMEZONE, Schedule, ScheduleError, load_timezone

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TlsTable(_Table):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsTable:
        if (self.cert_file is None) != (self.key_file is None):
            raise PydanticCustomError(
                "tls_pair",
                "cert_file and key_file go together",
                {"hint": "give both (client certificate) or neither (server-authenticated TLS)"},
            )
        return self


class ServerTable(_Table):
    address: str = DEFAULT_ADDRESS
    tls: TlsTable | None = None
    call_deadline: Duration = ServerConfig.call_deadline
    # This caller's token for a server with access control, sent on every call.
    token_file: str | None = Field(default=None, min_length=1)
    token_env: str | None = Field(default=None, min_length=1)
    allow_plaintext_token: bool = False  # send it without TLS beyond loopback

    @field_validator("address")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        if "://" in value or value.startswith("unix:"):
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise PydanticCustomError(
                "address",
                'address "{given}" is not host:port',
                {"given": value, "hint": f'write e.g. address = "{DEFAULT_ADDRESS}"'},
            )
        return value


When = Literal["always", "failure", "change"]


class NotifyUseTable(_Table):
    """A job's use of a target, by name or with its own policy: {target = "chat", when = ...}."""

    target: str
    when: When | None = None


def _target_name(value: object) -> object:
    return {"target": value} if isinstance(value, str) else value


class _NotifyCommon(_Table):
    when: When = "failure"
    retries: int = 3
    retry_backoff: Duration = timedelta(seconds=10)

    @field_validator("retries")
    @classmethod
    def _retries(cls, value: int) -> int:
        if not 0 <= value <= 20:
            raise PydanticCustomError(
                "retries", "retries must be between 0 and 20", {"hint": "write e.g. retries = 3"}
            )
        return value


class EmailTable(_NotifyCommon):
    type: Literal["email"]
    host: str
    port: int | None = None
    security: Literal["plain", "starttls", "tls"] = "starttls"
    sender: str
    to: list[str]
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    timeout: Duration = timedelta(seconds=30)
    ca_file: str | None = None

    @field_validator("to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if "@" not in v]
        if not value or bad:
            raise PydanticCustomError(
                "recipients",
                "to must list at least one mail address, got {given}",
                {"given": repr(value), "hint": 'write e.g. to = ["ops@example.com"]'},
            )
        return value


class AppriseTable(_NotifyCommon):
    type: Literal["apprise"]
    urls: list[str]

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        if not value or any("://" not in v for v in value):
            raise PydanticCustomError(
                "urls",
                "urls must list apprise URLs, got {given}",
                {"given": repr(value), "hint": 'write e.g. urls = ["slack://T000/B000/XXXX"]'},
            )
        return value


class CommandTable(_NotifyCommon):
    type: Literal["command"]
    command: list[str]
    timeout: Duration = timedelta(seconds=60)
    env: list[str] = []  # names of the scheduler's environment variables the program gets

    @field_validator("env")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not _ENV_NAME.fullmatch(name)]
        if bad:
            raise PydanticCustomError(
                "env",
                "env lists names of environment variables, not {bad}",
                {"bad": ", ".join(bad), "hint": 'write e.g. env = ["HTTPS_PROXY", "PGHOST"]'},
            )
        return value

    @field_validator("command")
    @classmethod
    def _argv(cls, value: list[str]) -> list[str]:
        if not value or not value[0]:
            raise PydanticCustomError(
                "command",
                "command must name a program",
                {"hint": 'write e.g. command = ["/usr/local/bin/on-backup", "--quiet"]'},
            )
        return value


NotifyTable = Annotated[EmailTable | AppriseTable | CommandTable, Field(discriminator="type")]


class JobFields(_Table):
    """What a job sets, and what [defaults] may set for every job."""

    cluster_id: str | None = None
    cluster_name: str | None = None
    cassandra_host: str | None = None
    register_if_missing: bool | None = None
    schedule: str | None = None
    timezone: str | None = None
    jitter: Duration | None = None
    enabled: bool | None = None
    wait_timeout: Duration | None = None
    poll_interval: Duration | None = None
    retries: int | None = None
    retry_backoff: Duration | None = None
    missed_runs: Literal["run-once", "skip"] | None = None
    misfire_grace: Duration | None = None
    when_no_snapshot: Literal["fail", "take-snapshot"] | None = None
    notify: list[Annotated[NotifyUseTable, BeforeValidator(_target_name)]] | None = None
    alert_after: Duration | None = None
    heartbeat_url: str | None = None
    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: Duration | None = None
    min_keep: int | None = None
    failed_grace: Duration | None = None
    prune_schedule: str | None = None

    @field_validator(
        "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"
    )
    @classmethod
    def _keep_count(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not 1 <= value <= 100_000:
            raise PydanticCustomError(
                "keep",
                "{key} must be between 1 and 100000, not {given}",
                {
                    "key": info.field_name,
                    "given": value,
                    "hint": "leave the key out to turn the rule off, or write e.g. 7",
                },
            )
        return value

    @field_validator("min_keep")
    @classmethod
    def _min_keep(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise PydanticCustomError(
                "min_keep",
                "min_keep must be 1 or more: a prune never leaves a job without a good backup",
                {"hint": "write min_keep = 1 (the default) or more"},
            )
        return value

    @field_validator("heartbeat_url")
    @classmethod
    def _heartbeat(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise PydanticCustomError(
                "heartbeat_url",
                'heartbeat_url "{given}" is not an http(s) URL',
                {"given": value, "hint": 'write e.g. "https://hc-ping.com/<uuid>"'},
            )
        return value

    @field_validator("schedule", "prune_schedule")
    @classmethod
    def _cron(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            try:
                parse_schedule(info.context, value, DEFAULT_TIMEZONE)
            except ScheduleError as exc:
                raise PydanticCustomError("schedule", exc.message, {"hint": exc.hint}) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                load_timezone(value)
            except ScheduleError as exc:
                raise PydanticCustomError("timezone", exc.message, {"hint": exc.hint}) from None
        return value

    @field_validator("retries")
    @classmethod
    def _retries(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 100:
            raise PydanticCustomError(
                "retries", "retries must be between 0 and 100", {"hint": "write e.g. retries = 3"}
            )
        return value


class DefaultsTable(JobFields):
    pass


class JobTable(JobFields):
    type: Literal["snapshot", "cluster-wide", "incremental"]


class SchedulerTable(_Table):
    """How the scheduler itself runs: where it keeps state, how it reloads and stops."""

    state_dir: str | None = None
    shutdown_grace: Duration = RuntimeConfig.shutdown_grace
    reload_poll: Duration = RuntimeConfig.reload_poll
    max_parallel_runs: int = RuntimeConfig.max_parallel_runs
    metrics_listen: str | None = RuntimeConfig.metrics_listen
    stale_check: Duration = RuntimeConfig.stale_check

    @field_validator("metrics_listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise PydanticCustomError(
                "address",
                'metrics_listen "{given}" is not host:port',
                {"given": value, "hint": 'write e.g. metrics_listen = "127.0.0.1:9464"'},
            )
        return value

    @field_validator("max_parallel_runs")
    @classmethod
    def _parallel(cls, value: int) -> int:
        if not 1 <= value <= 256:
            raise PydanticCustomError(
                "max_parallel_runs",
                "max_parallel_runs must be between 1 and 256",
                {"hint": "write e.g. max_parallel_runs = 8 (runs on one cluster never overlap)"},
            )
        return value


class ConfigFile(_Table):
    scheduler: SchedulerTable = SchedulerTable()
    server: ServerTable = ServerTable()
    defaults: DefaultsTable = DefaultsTable()
    jobs: dict[str, JobTable] = {}
    notify: dict[str, NotifyTable] = {}


ScheduleCache = dict[tuple[str, str], Schedule]


def parse_schedule(cache: object, expression: str, zone: str) -> Schedule:
    """Schedule.parse, remembered for one load: thousands of jobs often share a few lines."""
    memo: ScheduleCache | None = None
    if isinstance(cache, dict):
        memo = cache.get("schedules")
    if memo is None:
        return Schedule.parse(expression, zone)
    key = (expression, zone)
    found = memo.get(key)
    if found is None:
        found = memo[key] = Schedule.parse(expression, zone)
    return found


def allowed_keys(path: tuple[str, ...]) -> list[str]:
    """The keys a table at `path` accepts, for "did you mean" hints on unknown keys."""
    tables: dict[tuple[str, ...], type[BaseModel]] = {
        (): ConfigFile,
        ("scheduler",): SchedulerTable,
        ("server",): ServerTable,
        ("server", "tls"): TlsTable,
        ("defaults",): DefaultsTable,
    }
    if len(path) == 2 and path[0] == "notify":
        keys = {k for m in (EmailTable, AppriseTable, CommandTable) for k in m.model_fields}
        return sorted(keys)
    model = JobTable if len(path) == 2 and path[0] == "jobs" else tables.get(path)
    return list(model.model_fields) if model is not None else []
