"""The demo's config files, written next to its data so people can open and change them."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from tools.localcluster import LocalCluster
from tools.localcluster.nodeconfig import nodetool_jvm_table

REPO = Path(__file__).resolve().parents[2]
NODETOOL = REPO / "tools" / "localcluster" / "nodetool"


def server_config(
    work: Path,
    cluster: LocalCluster,
    port: int,
    app: str | None = None,
    storage: str | None = None,
) -> Path:
    """The built-in server's config; `app` adds the example pausable application, `storage`
    is a [storage] table instead of the directory beside the demo's data."""
    hosts = "".join(
        f'\n[nodes.hosts."{spec.address}"]\njmx_host = "127.0.0.1"\n'
        f'jmx_port = {spec.jmx_port}\ndata_dir = "{spec.data_dir}"\n'
        f'commitlog_dir = "{spec.commitlog_dir}"\nhints_dir = "{spec.hints_dir}"\n'
        f'saved_caches_dir = "{spec.saved_caches_dir}"\n'
        for spec in cluster.specs
    )
    applications = ""
    if app is not None:
        applications = f"""
[applications]
instances = ["{app}"]       # the example pausable application (examples/pausable_app)
pause_timeout = "30s"
"""
    path = work / "server.toml"
    path.write_text(
        f"""# The demo's built-in Cassy-compatible server.
[server]
host = "127.0.0.1"
port = {port}
shutdown_grace = "10s"

[metadata]
path = "server-metadata.db"

{storage or f'[storage]{chr(10)}uri = "{(work / "backups").as_uri()}"{chr(10)}'}{applications}
[nodes]
nodetool = ["{NODETOOL}"]
{nodetool_jvm_table(cluster.java, cluster.jars)}{hosts}"""
    )
    return path


#: Schedules of the demo's jobs (snapshot, incremental, cluster-wide).
NORMAL_SCHEDULES = ("*/2 * * * *", "* * * * *", "*/5 * * * *")
#: A short run (DEMO_SECONDS): each job every two minutes, 25 seconds apart, the first 20
#: seconds after the scheduler starts, so that a slow machine finishes one before the next
#: (a job takes a few seconds; one overlap is routine).
SHORT_OFFSETS_S = (20, 70, 45)


def short_schedules(start: datetime) -> tuple[str, str, str]:
    """Every-two-minutes schedules (with seconds) whose first runs follow `start` in order."""
    firsts = [start + timedelta(seconds=offset) for offset in SHORT_OFFSETS_S]
    snapshot, incremental, cluster_wide = (
        f"{at.second} {at.minute % 2}-59/2 * * * *" for at in firsts
    )
    return snapshot, incremental, cluster_wide


def _scheduler_head(work: Path, cluster: LocalCluster, port: int, notify: str = "") -> str:
    """The server, state and per-job defaults every scheduler config of the demo shares."""
    return f"""[server]
address = "127.0.0.1:{port}"
call_deadline = "60s"

[scheduler]
state_dir = "{work / "state"}"

[defaults]
cassandra_host = "{cluster.addresses[0]}"
register_if_missing = true
wait_timeout = "10m"
poll_interval = "2s"
retries = 3
retry_backoff = "5s"
{notify}"""


def scheduler_config(
    work: Path,
    cluster: LocalCluster,
    port: int,
    mail_port: int,
    schedules: tuple[str, str, str] = NORMAL_SCHEDULES,
) -> Path:
    """The demo's jobs, mailing the demo's mail sink on `mail_port`: every snapshot, and
    the other jobs' failures."""
    snapshot, incremental, cluster_wide = schedules
    head = _scheduler_head(work, cluster, port, 'notify = ["demo-mail"]\n')
    path = work / "scheduler.toml"
    path.write_text(
        f"""# The demo's scheduler: change a schedule here and the daemon picks it up.
{head}
[jobs.snapshot]
type = "snapshot"
schedule = "{snapshot}"
# Every snapshot's outcome is mailed; the other jobs mail failures only (the default).
notify = [{{ target = "demo-mail", when = "always" }}]

[jobs.incremental]
type = "incremental"
schedule = "{incremental}"
when_no_snapshot = "take-snapshot"

# Pauses the example application, snapshots every node at once, resumes it.
[jobs.cluster-wide]
type = "cluster-wide"
schedule = "{cluster_wide}"

# The demo's mail sink: each notice lands as a .eml file in {work / "mail"}.
[notify.demo-mail]
type = "email"
host = "127.0.0.1"
port = {mail_port}
security = "plain"
sender = "cassy-scheduler@example.com"
to = ["ops@example.com"]
"""
    )
    return path


def restore_scheduler_config(work: Path, cluster: LocalCluster, port: int) -> Path:
    """Jobs the restore tour runs once each with `cassy-scheduler backup`; no daemon runs."""
    path = work / "scheduler.toml"
    path.write_text(
        f"""# The restore tour's scheduler config, for `cassy-scheduler backup KIND --config`.
{_scheduler_head(work, cluster, port)}
[jobs.snapshot]
type = "snapshot"
schedule = "30 0 * * *"

[jobs.incremental]
type = "incremental"
schedule = "0 * * * *"
"""
    )
    return path
