"""Reading a scheduler config file into a SchedulerConfig, or a ConfigError naming every problem.

The TOML is parsed by tomllib, its shape checked by pydantic, then defaults are applied and
the rules that span fields are checked here; every problem carries its file, line and key.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from cassy_scheduler.addresses import host_of, is_loopback
from cassy_scheduler.config.loadtargets import notify_target
from cassy_scheduler.config.model import (
    ClusterRef,
    JobConfig,
    RuntimeConfig,
    SchedulerConfig,
    ServerConfig,
    SourceLocation,
    WhenNoSnapshot,
)
from cassy_scheduler.config.schema import (
    ConfigFile,
    DefaultsTable,
    JobTable,
    NotifyUseTable,
    ScheduleCache,
    SchedulerTable,
    ServerTable,
    allowed_keys,
    parse_schedule,
)
from cassy_scheduler.config.targets import NotifyTarget, NotifyUse, NotifyWhen
from cassy_scheduler.configfile.errors import ConfigError, ConfigProblem, toml_syntax_problem
from cassy_scheduler.configfile.locate import KeyPath, key_lines, line_of
from cassy_scheduler.configfile.secrets import Secret
from cassy_scheduler.jobtype import JobType
from cassy_scheduler.retention.policy import RetentionPolicy
from cassy_scheduler.timetable import DEFAULT_TIMEZONE, MissedRunPolicy, Schedule, ScheduleError
from cassy_scheduler.tls import TlsConfig

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NAME_HINT = 'use letters, digits, "-", "_" and ".", starting with a letter or digit'
_CLUSTER_KEYS = ("cluster_id", "cluster_name", "cassandra_host")
_CLUSTER_HINT = (
    'add one of cluster_id = "...", cluster_name = "..." or cassandra_host = "10.0.0.1" '
    "to this job or to [defaults]"
)
_EXAMPLES = {
    "type": 'add type = "snapshot" (or "cluster-wide" or "incremental")',
    "schedule": 'add schedule = "30 0 * * *" to this job or to [defaults]',
}
_TARGET_TYPES = ("email", "apprise", "command")
_NOT_A_SCHEDULER_CONFIG = (
    "the config is a cassy-scheduler TOML file now, not the seed scripts' config file: "
    "write one from examples/scheduler.toml (contrib/cron/README.md tells how the seed's "
    "crontab moves over)"
)
_TYPE_HINTS = {
    "string_type": ("must be a quoted string", 'write it in double quotes, e.g. {key} = "value"'),
    "bool_type": ("must be true or false", "write true or false, without quotes"),
    "int_type": ("must be a whole number", "write e.g. {key} = 3, without quotes"),
    "list_type": ("must be a list", 'write it in brackets, e.g. {key} = ["{example}"]'),
}
_LIST_EXAMPLES = {"notify": "ops-mail", "urls": "slack://T000/B000/XXXX", "to": "ops@example.com"}


def load_config(path: str | Path) -> SchedulerConfig:
    """Read and validate the config file at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [
                ConfigProblem(
                    str(path),
                    None,
                    "",
                    "the config file does not exist",
                    "create it; examples/scheduler.toml is a commented starting point",
                )
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [ConfigProblem(str(path), None, "", f"cannot read the config file: {exc}", "")]
        ) from None
    return parse_config(text, path)


def parse_config(text: str, path: str | Path) -> SchedulerConfig:
    """Validate config text; `path` names the file in messages and anchors relative paths."""
    path = Path(path)
    report = _Report(str(path), {})
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            [toml_syntax_problem(report.file, text, exc, not_ours=_NOT_A_SCHEDULER_CONFIG)]
        ) from None
    report.lines = key_lines(text)
    try:
        parsed = ConfigFile.model_validate(data, context=report.context)
    except ValidationError as exc:
        for error in exc.errors():
            report.from_pydantic(error)
        raise ConfigError(report.sorted()) from None
    config = _build(parsed, report, path, frozenset(data))
    if report.problems:
        raise ConfigError(report.sorted())
    return config


@dataclass
class _Report:
    """Problems found so far, and the key lines used to place them."""

    file: str
    lines: dict[KeyPath, int]
    problems: list[ConfigProblem] = field(default_factory=list)
    context: dict[str, ScheduleCache] = field(default_factory=lambda: {"schedules": {}})

    def add(self, path: KeyPath, message: str, hint: str = "") -> None:
        self.problems.append(
            ConfigProblem(self.file, line_of(self.lines, path), _dotted(path), message, hint)
        )

    def sorted(self) -> list[ConfigProblem]:
        return sorted(self.problems, key=lambda p: p.line or 0)

    def location(self, path: KeyPath) -> SourceLocation:
        return SourceLocation(self.file, line_of(self.lines, path))

    def from_pydantic(self, error: ErrorDetails) -> None:
        path = tuple(str(p) for p in error["loc"])
        if len(path) > 2 and path[0] == "notify" and path[2] in _TARGET_TYPES:
            path = path[:2] + path[3:]  # the union's tag is not a key of the file
        kind = error["type"]
        ctx: dict[str, Any] = dict(error.get("ctx") or {})
        given = error.get("input")
        message, hint = error["msg"], str(ctx.get("hint", ""))
        if kind == "extra_forbidden":
            message, hint = f'unknown key "{path[-1]}"', _unknown_key_hint(path)
        elif kind == "missing":
            message = f"{path[-1]} is missing"
            hint = _EXAMPLES.get(path[-1], f"add {path[-1]} = ...")
        elif kind == "literal_error":
            choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
            close = difflib.get_close_matches(str(given), choices, n=1)
            message = f'"{given}" is not one of ' + ", ".join(f'"{c}"' for c in choices)
            hint = f'did you mean "{close[0]}"?' if close else f'write e.g. "{choices[0]}"'
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            path = (*path, "type")
            kind_given = given.get("type") if isinstance(given, dict) else given
            message = f"type must be one of {', '.join(_TARGET_TYPES)}, got {kind_given!r}"
            if kind == "union_tag_not_found":
                message = "type is missing"
            hint = 'write e.g. type = "email" (or "apprise" or "command")'
        elif kind in _TYPE_HINTS:
            text, hint = _TYPE_HINTS[kind]
            key = path[-1] if path and not path[-1].isdigit() else "key"
            hint = hint.format(key=key, example=_LIST_EXAMPLES.get(key, "..."))
            message = f"{text}, got {given!r}"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            message = f"must be a table, got {given!r}"
            hint = f"write it as a [{_dotted(path)}] table"
        if _SECRET_KEYS.intersection(path) and given is not None:
            message = _without_value(message, given)
        self.add(path, message, hint)


#: Keys whose values may hold a secret (a password, a chat webhook's token, a ping URL's
#: uuid, a hook's arguments): a problem with one never repeats the value, since problems
#: are logged and, on a refused reload, sent to every notification target.
_SECRET_KEYS = frozenset({"password", "urls", "command", "env", "heartbeat_url"})


def _without_value(message: str, given: object) -> str:
    for shown in (repr(given), str(given)):
        if len(shown) > 2:
            message = message.replace(shown, "(the value, not shown)")
    return message


def _unknown_key_hint(path: KeyPath) -> str:
    key, table = path[-1], path[:-1]
    allowed = allowed_keys(table)
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f'did you mean "{close[0]}"?'
    if table == ("defaults",) and key in JobTable.model_fields:
        return f"{key} is set per job, in its [jobs.NAME] table"
    return "allowed here: " + ", ".join(allowed) if allowed else "remove it"


def _dotted(path: KeyPath) -> str:
    return ".".join(p if _NAME.fullmatch(p) else f'"{p}"' for p in path)


def _build(
    parsed: ConfigFile, report: _Report, path: Path, declared: frozenset[str]
) -> SchedulerConfig:
    base_dir = path.parent
    server = parsed.server
    tls = None
    if server.tls is not None:
        tls = TlsConfig(
            *(
                _anchor(base_dir, f)
                for f in (server.tls.ca_file, server.tls.cert_file, server.tls.key_file)
            )
        )
    _require_positive(report, ("server", "call_deadline"), server.call_deadline)
    targets: list[NotifyTarget] = []
    for name, table in parsed.notify.items():
        try:
            targets.append(notify_target(name, table, report.location(("notify", name)), base_dir))
        except ConfigError as exc:  # a password given two ways
            report.problems.extend(
                dataclasses.replace(p, line=line_of(report.lines, ("notify", name)))
                for p in exc.problems
            )
    for target in targets:
        if not _NAME.fullmatch(target.name):
            report.add(("notify", target.name), "the target name is not usable", _NAME_HINT)
    names = list(parsed.notify)
    _check_notify(report, ("defaults", "notify"), parsed.defaults.notify, names)
    jobs = tuple(
        job
        for name, table in parsed.jobs.items()
        if (job := _build_job(name, table, parsed.defaults, report, names)) is not None
    )
    # What a job that names nothing more than [defaults] gets: cron's ad-hoc jobs. With jobs
    # in the file, each has had its waits checked (with the [defaults] they take).
    defaults_only = _Layers("", JobTable.model_construct(type="snapshot"), parsed.defaults)
    if not parsed.jobs:
        _check_waits(defaults_only, report)
    return SchedulerConfig(
        path=path,
        job_defaults=tuple(_policy(defaults_only).items()),
        server=ServerConfig(
            server.address, tls, server.call_deadline, _server_token(server, report, base_dir)
        ),
        jobs=jobs,
        notify=tuple(targets),
        runtime=_runtime(parsed.scheduler, report, base_dir),
        declared=declared,
    )


def _server_token(server: ServerTable, report: _Report, base_dir: Path) -> str | None:
    """The token from token_file or token_env, read now (a reload reads it again)."""
    given = [key for key in ("token_file", "token_env") if getattr(server, key)]
    if not given:
        return None
    key = given[-1]
    if len(given) > 1:
        report.add(("server", key), "token_file and token_env are both given", "keep one")
        return None
    if server.token_env:
        secret = Secret(f"server.{key}", report.file, env=server.token_env)
    else:
        secret = Secret(f"server.{key}", report.file, file=_anchor(base_dir, server.token_file))
    try:
        token = secret.resolve().strip()
    except ConfigError as exc:
        report.problems.extend(
            dataclasses.replace(p, line=line_of(report.lines, ("server", key)))
            for p in exc.problems
        )
        return None
    if not token:
        report.add(("server", key), "the token is empty", "write this caller's token into it")
        return None
    if (
        server.tls is None
        and not server.allow_plaintext_token
        and not is_loopback(host_of(server.address))
    ):
        report.add(
            ("server", key),
            f"the token would cross the network in plaintext to {server.address}",
            "configure [server.tls], or set allow_plaintext_token = true when TLS ends in "
            "a proxy on this host",
        )
        return None
    return token


def _runtime(table: SchedulerTable, report: _Report, base_dir: Path) -> RuntimeConfig:
    here: KeyPath = ("scheduler",)
    _require_positive(report, (*here, "reload_poll"), table.reload_poll)
    state_dir = None
    if table.state_dir is not None:
        if not table.state_dir.strip():
            report.add(
                (*here, "state_dir"),
                "state_dir is empty",
                'write a directory the scheduler may write, e.g. "/var/lib/cassy-scheduler", '
                "or remove the key for the default",
            )
        else:
            state_dir = _anchor(base_dir, table.state_dir)
    _require_positive(report, (*here, "stale_check"), table.stale_check)
    settings = RuntimeConfig(
        shutdown_grace=table.shutdown_grace,
        reload_poll=table.reload_poll,
        max_parallel_runs=table.max_parallel_runs,
        metrics_listen=table.metrics_listen,
        stale_check=table.stale_check,
    )
    if state_dir is not None:
        return dataclasses.replace(settings, state_dir=state_dir)
    return settings


def _anchor(base_dir: Path, name: str | None) -> Path | None:
    if name is None:
        return None
    file = Path(name).expanduser()
    return file if file.is_absolute() else base_dir / file


@dataclass(frozen=True)
class _Layers:
    """A job's own table over [defaults]: which value applies, and where it was written."""

    name: str
    job: JobTable
    defaults: DefaultsTable

    def get(self, key: str) -> tuple[Any, KeyPath]:
        if key in self.job.model_fields_set:
            return getattr(self.job, key), ("jobs", self.name, key)
        if key in self.defaults.model_fields_set:
            return getattr(self.defaults, key), ("defaults", key)
        return None, ("jobs", self.name)

    def value(self, key: str, *, fallback: Any = None) -> Any:
        """The value that applies; unset in both, the default JobConfig holds for it."""
        value, _ = self.get(key)
        if value is not None:
            return value
        return _JOB_DEFAULTS.get(key, fallback)


_JOB_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(JobConfig) if f.default is not dataclasses.MISSING
}


def _build_job(
    name: str, table: JobTable, defaults: DefaultsTable, report: _Report, targets: list[str]
) -> JobConfig | None:
    here: KeyPath = ("jobs", name)
    before = len(report.problems)
    layers = _Layers(name, table, defaults)
    if not _NAME.fullmatch(name):
        report.add(here, f'job name "{name}" is not usable', _NAME_HINT)
    job_type = JobType(table.type)
    cluster = _cluster(layers, report)
    schedule = _schedule(layers, report)
    if "when_no_snapshot" in table.model_fields_set and job_type is not JobType.INCREMENTAL:
        report.add(
            (*here, "when_no_snapshot"),
            f'when_no_snapshot applies only to incremental jobs; this job is "{job_type}"',
            "remove it from this job",
        )
    _check_waits(layers, report)
    retention = _retention(layers, report, job_type)
    prune_schedule = _prune_schedule(layers, report, retention)
    if "notify" in table.model_fields_set:
        _check_notify(report, (*here, "notify"), table.notify, targets)
    if len(report.problems) > before or cluster is None or schedule is None:
        return None
    return JobConfig(
        name=name,
        type=job_type,
        cluster=cluster,
        schedule=schedule,
        source=report.location(here),
        retention=retention,
        prune_schedule=prune_schedule,
        **_policy(layers),
    )


_RETENTION_KEYS = (
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_within",
    "min_keep",
    "failed_grace",
)


def _retention(layers: _Layers, report: _Report, job_type: JobType) -> RetentionPolicy | None:
    """The job's keep_* rules over [defaults]'; an incremental job has none of its own,
    since its backups live and die with the snapshot they extend."""
    own = [k for k in _RETENTION_KEYS if k in layers.job.model_fields_set]
    if job_type is JobType.INCREMENTAL:
        if own:
            report.add(
                ("jobs", layers.name, own[0]),
                "an incremental job keeps no backups of its own: its incrementals are kept "
                "and removed with the snapshot they extend",
                "put the keep_* rules on the job that takes the snapshots",
            )
        return None
    values = {k: layers.get(k)[0] for k in _RETENTION_KEYS}
    policy = RetentionPolicy(
        **{
            k: v
            for k, v in values.items()
            if v is not None and k not in ("min_keep", "failed_grace")
        },
        min_keep=values["min_keep"] or 1,
        failed_grace=values["failed_grace"]
        if values["failed_grace"] is not None
        else RetentionPolicy.failed_grace,
    )
    within, within_path = layers.get("keep_within")
    if within is not None:
        _require_positive(report, within_path, within)
    if not policy.has_rules:
        extra = [k for k in ("min_keep", "failed_grace") if k in own]
        if extra:
            report.add(
                layers.get(extra[0])[1],
                f"{extra[0]} is set but no keep_* rule is, so nothing would ever be pruned",
                "add a rule such as keep_daily = 7, or remove it",
            )
        return None
    return policy


def _policy(layers: _Layers) -> dict[str, Any]:
    """How a job runs, waits, retries and tells (every JobConfig field but what it backs up
    and when): its own keys over [defaults] over JobConfig's defaults."""
    return {
        "jitter": layers.value("jitter"),
        "enabled": layers.value("enabled"),
        "wait_timeout": layers.value("wait_timeout"),
        "poll_interval": layers.value("poll_interval"),
        "retries": layers.value("retries"),
        "retry_backoff": layers.value("retry_backoff"),
        "missed_runs": MissedRunPolicy(layers.value("missed_runs")),
        "misfire_grace": layers.value("misfire_grace"),
        "when_no_snapshot": WhenNoSnapshot(layers.value("when_no_snapshot")),
        "notify": tuple(
            NotifyUse(use.target, NotifyWhen(use.when) if use.when else None)
            for use in layers.value("notify")
        ),
        "alert_after": layers.value("alert_after"),
        "heartbeat_url": layers.value("heartbeat_url"),
    }


def _cluster(layers: _Layers, report: _Report) -> ClusterRef | None:
    """The cluster keys come as a group: a job's own keys replace those of [defaults]."""
    own = [k for k in _CLUSTER_KEYS if k in layers.job.model_fields_set]
    source, where = (layers.job, ("jobs", layers.name)) if own else (layers.defaults, ("defaults",))
    given = [k for k in _CLUSTER_KEYS if getattr(source, k) is not None]
    if not given:
        report.add(
            ("jobs", layers.name), "the job does not say which cluster to back up", _CLUSTER_HINT
        )
        return None
    if len(given) > 1:
        report.add(
            (*where, given[1]),
            f"{' and '.join(given)} are both given; a job names its cluster one way",
            f"keep only one of {', '.join(given)}",
        )
        return None
    value = getattr(source, given[0])
    if not value.strip():
        report.add((*where, given[0]), f"{given[0]} is empty", _CLUSTER_HINT)
        return None
    register, register_path = layers.get("register_if_missing")
    explicit = "register_if_missing" in layers.job.model_fields_set
    if register and given[0] != "cassandra_host" and explicit:
        report.add(
            register_path,
            "register_if_missing works only with cassandra_host",
            f"remove it, or name the cluster by cassandra_host instead of {given[0]}",
        )
        return None
    return ClusterRef(
        **{given[0]: value},
        register_if_missing=bool(register) and given[0] == "cassandra_host",
    )


def _schedule(layers: _Layers, report: _Report) -> Schedule | None:
    expression, path = layers.get("schedule")
    if expression is None:
        report.add(("jobs", layers.name), "the job has no schedule", _EXAMPLES["schedule"])
        return None
    return _in_job_zone(layers, report, expression, path)


def _in_job_zone(
    layers: _Layers, report: _Report, expression: str, path: KeyPath
) -> Schedule | None:
    """A cron expression read in the job's timezone; None (and a problem) when bad."""
    zone = layers.value("timezone", fallback=DEFAULT_TIMEZONE)
    try:
        return parse_schedule(report.context, expression, zone)
    except ScheduleError as exc:
        report.add(path, exc.message, exc.hint)
        return None


def _prune_schedule(
    layers: _Layers, report: _Report, retention: RetentionPolicy | None
) -> Schedule | None:
    expression, path = layers.get("prune_schedule")
    if expression is None:
        return None
    if retention is None:
        if path[0] == "jobs":  # one in [defaults] is for the jobs with rules
            report.add(
                path,
                "prune_schedule is set but the job has no keep_* rule, so nothing would be pruned",
                "add a rule such as keep_daily = 7, or remove prune_schedule",
            )
        return None
    return _in_job_zone(layers, report, expression, path)


def _check_waits(layers: _Layers, report: _Report) -> None:
    """The waits a job (or [defaults] alone, for cron's ad-hoc jobs) runs with."""
    wait_timeout: timedelta = layers.value("wait_timeout")
    poll_interval: timedelta = layers.value("poll_interval")
    _require_positive(report, layers.get("wait_timeout")[1], wait_timeout)
    _require_positive(report, layers.get("poll_interval")[1], poll_interval)
    if timedelta(0) < wait_timeout < poll_interval:
        report.add(
            layers.get("poll_interval")[1],
            "poll_interval is longer than wait_timeout",
            "poll more often than the time allowed for the backup, e.g. 10s within 2h",
        )
    alert_after, alert_path = layers.get("alert_after")
    if alert_after is not None:
        _require_positive(report, alert_path, alert_after)


def _require_positive(report: _Report, path: KeyPath, value: timedelta) -> None:
    if value <= timedelta(0):
        report.add(path, "must be longer than zero", 'write e.g. "30s" or "2h"')


def _check_notify(
    report: _Report, path: KeyPath, uses: list[NotifyUseTable] | None, targets: list[str]
) -> None:
    for name in [use.target for use in uses or []]:
        if name not in targets:
            close = difflib.get_close_matches(name, targets, n=1)
            hint = (
                f'did you mean "{close[0]}"?'
                if close
                else f"define it as a [notify.{name}] table, or remove it from the list"
            )
            report.add(path, f'notify target "{name}" is not defined', hint)
