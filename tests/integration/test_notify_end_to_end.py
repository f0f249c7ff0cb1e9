"""Notifications from real runs: the built-in server and a real 1-node Cassandra back up, a
real SMTP server on loopback receives the mail, the daemon's metrics endpoint is scraped."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from cassy_scheduler.client import CassyClient
from tests.integration.test_scheduler_helpers import (
    DaemonProcess,
    cli,
    fire_soon,
    runs,
    wait_for,
    write_config,
)
from tests.receivers import free_port, smtp_receiver
from tests.serverproc import ServerProcess
from tools.localcluster import LocalCluster

MAIL = """
[notify.ops-mail]
type = "email"
host = "127.0.0.1"
port = {port}
security = "plain"
sender = "backups@example.com"
to = ["ops@example.com", "dba@example.com"]
when = "always"
retries = 1
retry_backoff = "1s"
"""


def jobs(cluster_id: str, port: int) -> str:
    return f"""
[jobs.snap]
type = "snapshot"
cluster_id = "{cluster_id}"
schedule = "0 0 1 1 *"
notify = ["ops-mail"]

[jobs.incr]
type = "incremental"
cluster_id = "{cluster_id}"
schedule = "0 0 1 1 *"
when_no_snapshot = "fail"
notify = ["ops-mail"]
""" + MAIL.format(port=port)


def test_the_mail_of_a_failed_and_of_a_succeeded_backup(
    tmp_path: Path, server1: ServerProcess, cluster1: LocalCluster
) -> None:
    with CassyClient(server1.address) as client:
        cluster = client.register_cluster(cluster1.addresses[0])  # fresh: no snapshot yet
    with smtp_receiver() as receiver:
        config = write_config(tmp_path, server1.address, jobs(cluster.cluster_id, receiver.port))
        failed = cli("backup", "incremental", "--job", "incr", "--config", str(config), "--json")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        (fail_mail,) = receiver.wait_for(1)
        done = cli("backup", "snapshot", "--job", "snap", "--config", str(config), "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        ok_mail = receiver.wait_for(2)[1]
    outcome = json.loads(done.stdout)
    name = cluster.cluster_name
    assert fail_mail.subject == f"FAILED incremental {name}: no snapshot to extend"
    assert fail_mail.recipients == ("ops@example.com", "dba@example.com")
    fail_text = fail_mail.part("plain")
    assert f"{cluster.cluster_id} ({name})" in fail_text
    assert "no-base-snapshot" in fail_text and "Error: " in fail_text
    assert "--job incr" in fail_text
    assert ok_mail.subject == f"OK snapshot {name}: 1 of 1 node completed"
    text, html = ok_mail.part("plain"), ok_mail.part("html")
    node = cluster1.addresses[0]
    assert f"{node}  COMPLETED" in text
    assert f"<td>{node}</td><td style='color:green'>COMPLETED</td>" in html
    assert outcome["snapshot_id"] in text and "Next scheduled run  2027-01-01T00:00:00" in text
    failed_run, ok_run = runs(config)
    assert (failed_run.outcome.value, ok_run.outcome.value) == ("failed", "succeeded")
    shown = cli("history", "--config", str(config), "--json")
    assert shown.returncode == 0, shown.stderr
    notified = {run["job"]: run["notifications"] for run in json.loads(shown.stdout)}
    for job in ("snap", "incr"):
        ((delivery,),) = [notified[job]]
        assert (delivery["target"], delivery["delivered"]) == ("ops-mail", True)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def test_the_daemon_mails_its_run_and_shows_it_in_metrics(
    tmp_path: Path, server1: ServerProcess, cluster1: LocalCluster
) -> None:
    with CassyClient(server1.address) as client:
        cluster = client.register_cluster(cluster1.addresses[0])
    metrics_port = free_port()
    with smtp_receiver() as receiver:
        config = write_config(
            tmp_path,
            server1.address,
            jobs(cluster.cluster_id, receiver.port),
            scheduler=f'metrics_listen = "127.0.0.1:{metrics_port}"',
        )
        daemon = DaemonProcess(config).start()
        try:
            fire_soon(config, job="snap")
            (mail,) = receiver.wait_for(1, timeout_s=300)
            scraped = ""

            def counted() -> bool:
                nonlocal scraped
                scraped = scrape(metrics_port)
                return 'cassy_scheduler_runs_total{job="snap",outcome="succeeded"} 1.0' in scraped

            wait_for("the run in the metrics", counted, 60)
        finally:
            assert daemon.stop() == 0, daemon.output()
    assert mail.subject == f"OK snapshot {cluster.cluster_name}: 1 of 1 node completed"
    assert 'cassy_scheduler_last_run_outcome{job="snap",outcome="succeeded"} 1.0' in scraped
    assert 'cassy_scheduler_next_run_timestamp_seconds{job="incr"}' in scraped
    assert "notice delivered job=snap target=ops-mail" in daemon.output()


def test_with_the_mail_server_down_the_backup_still_succeeds_and_history_says_so(
    tmp_path: Path, server1: ServerProcess, cluster1: LocalCluster
) -> None:
    with CassyClient(server1.address) as client:
        cluster = client.register_cluster(cluster1.addresses[0])
    config = write_config(tmp_path, server1.address, jobs(cluster.cluster_id, free_port()))
    done = cli("backup", "snapshot", "--job", "snap", "--config", str(config), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["outcome"] == "succeeded"
    assert "notice not delivered job=snap target=ops-mail" in done.stderr
    shown = cli("history", "--config", str(config), "--json")
    ((run,),) = [json.loads(shown.stdout)]
    assert run["outcome"] == "succeeded"
    attempts = run["notifications"]
    assert [(a["attempt"], a["delivered"]) for a in attempts] == [(1, False), (2, False)]
    assert "Connection refused" in attempts[-1]["error"]
