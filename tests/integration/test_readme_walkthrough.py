"""The README, run as an operator would, on a real 1-node Cassandra.

Every command of README.md's sh and crontab blocks runs here in document order (bar the
`make` targets other tests run): a pip install into a fresh virtual environment, the configs
copied from examples/ and edited for this machine (the node, the ports, the mail server),
`serve` and `run` as background processes, the cron lines, the day-to-day verbs, `check`, a
node wiped and restored, `verify`. Paths under /opt, /etc and /var are moved into a
temporary directory, and CLUSTER_ID / SNAPSHOT_ID are filled in as the operator would.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cassandra.cluster import Cluster, Session

from cassy_scheduler.client import CassyClient
from cassy_scheduler.protocol.types import BackupType, OperationStatus
from tests.appproc import AppProcess
from tests.integration.test_restore_helpers import wait_for_session, wipe
from tests.readme import COVERED_ELSEWHERE, REPO, Command, commands
from tests.receivers import SmtpReceiver, free_port, smtp_receiver
from tests.serverproc import server_toml
from tools.localcluster import LocalCluster

pytestmark = pytest.mark.cassandra

OFFSET = int(os.environ.get("CASSY_TEST_IP_OFFSET", "0"))
ROWS_AT_SNAPSHOT = 200
ROWS_AFTER_SNAPSHOT = 50


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("readme-cluster"), 1, cluster_name="readme", first_octet=47 + OFFSET
    )
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


class Operator:
    """Types the README's commands, with this machine's values, and does what it says between."""

    def __init__(self, root: Path, cluster: LocalCluster, mail: SmtpReceiver) -> None:
        self.root = root
        self.cluster = cluster
        self.mail = mail
        self.address = cluster.addresses[0]
        self.port = free_port()
        self.app = AppProcess(
            f"127.0.0.1:{free_port()}",
            [self.address],
            "readme_app",
            root / "app.log",
            extra=["--replication-factor", "1", "--pairs-per-second", "5"],
        )
        self.env = {
            **os.environ,
            "XDG_STATE_HOME": str(root / "var" / "lib"),
            "COLUMNS": "160",
            "PYTHONUNBUFFERED": "1",
        }
        self.background: dict[str, subprocess.Popen[bytes]] = {}
        self.values: dict[str, str] = {}
        self.driver = Cluster([self.address], protocol_version=5)
        self.session: Session = self.driver.connect()

    # -- the values of this machine --

    def substitute(self, text: str) -> str:
        moved = {
            "/opt/cassy-scheduler": str(self.root / "opt" / "cassy-scheduler"),
            "/etc/cassy-scheduler": str(self.root / "etc" / "cassy-scheduler"),
            "/var/lib/cassy-scheduler": str(self.root / "var" / "lib" / "cassy-scheduler"),
            "10.0.0.1": self.address,
            "127.0.0.1:20051": f"127.0.0.1:{self.port}",
        }
        for old, new in moved.items():
            text = text.replace(old, new)
        for name in ("CLUSTER_ID", "SNAPSHOT_ID"):
            if re.search(rf"\b{name}\b", text):
                text = re.sub(rf"\b{name}\b", self.value(name), text)
        return text

    def value(self, name: str) -> str:
        if name not in self.values:
            with CassyClient(f"127.0.0.1:{self.port}", timeout_s=60) as client:
                if name == "CLUSTER_ID":
                    self.values[name] = client.list_clusters(limit=1)[0].cluster_id
                else:
                    self.values[name] = next(
                        row.snapshot_id
                        for row in client.list_backups(cluster_id=self.value("CLUSTER_ID"))
                        if row.backup_type is BackupType.NODE_SNAPSHOT
                        and row.status is OperationStatus.COMPLETED
                    )
        return self.values[name]

    # -- typing a command --

    def type(self, command: Command) -> None:
        text = self.substitute(command.text)
        words = text.split()
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            self.env[name] = os.path.expandvars(value.replace("$PATH", self.env["PATH"]))
            return
        if words[0] == "cassy-scheduler" and words[1] in ("serve", "run"):
            self.start_background(words[1], text)
            return
        if words[:2] == ["cassy-scheduler", "restore"]:
            self.take_the_node_down()
        done = subprocess.run(
            ["bash", "-c", text],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        allowed = {0, 1} if words[:2] == ["cassy-scheduler", "check"] else {0}
        assert done.returncode in allowed, (
            f"README.md:{command.line}: `{text}` exited {done.returncode}\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        self.after(words, text)

    def after(self, words: list[str], text: str) -> None:
        """What the README asks of the operator between commands."""
        if words[0] == "cp" and words[-1].endswith("scheduler.toml"):
            self.edit_scheduler_config(Path(words[-1]))
        elif words[0] == "cp" and words[-1].endswith("server.toml"):
            self.write_server_config(Path(words[-1]))
        elif words[:3] == ["cassy-scheduler", "backup", "snapshot"]:
            self.write_rows(ROWS_AT_SNAPSHOT, ROWS_AFTER_SNAPSHOT)
        elif words[:2] == ["cassy-scheduler", "restore"]:
            self.bring_the_node_back()
        elif words[:2] == ["cassy-scheduler", "schedule"]:
            self.wait_for_output("run", "job schedule changed job=weekly-snapshot")

    # -- the operator's edits and actions --

    def edit_scheduler_config(self, path: Path) -> None:
        """Our node, our server's port, our mail server (plain SMTP on loopback, no login)."""
        text = self.substitute(path.read_text(encoding="utf-8"))
        ours = f'host = "127.0.0.1"\nport = {self.mail.port}'
        text = text.replace('host = "smtp.example.com"', ours)
        text = text.replace('security = "starttls"', 'security = "plain"')
        text = re.sub(r"^(username|password_env) = .*\n", "", text, flags=re.M)
        # The default for root is /var/lib/cassy-scheduler: history left there by an earlier
        # run would leak into this one (and `check` would judge it).
        assert f'state_dir = "{self.root}/' in text, "state_dir must be set in the README config"
        path.write_text(text, encoding="utf-8")

    def write_server_config(self, path: Path) -> None:
        """Our node's JMX and directories, storage here, and the application that pauses."""
        self.app.start()
        applications = f'\n[applications]\ninstances = ["{self.app.listen}"]\n'
        written = server_toml(path.parent, [self.cluster], extra=applications)
        assert written == path
        path.write_text(path.read_text().replace("port = 0", f"port = {self.port}"))

    def start_background(self, verb: str, text: str) -> None:
        log = (self.root / f"{verb}.log").open("wb")
        self.background[verb] = subprocess.Popen(
            ["bash", "-c", f"exec {text}"],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        expected = "server listening" if verb == "serve" else "scheduler started"
        self.wait_for_output(verb, expected)

    def output(self, verb: str) -> str:
        return (self.root / f"{verb}.log").read_text(errors="replace")

    def wait_for_output(self, verb: str, expected: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while expected not in self.output(verb):
            proc = self.background[verb]
            assert proc.poll() is None, f"{verb} exited {proc.returncode}:\n{self.output(verb)}"
            assert time.monotonic() < deadline, f"no {expected!r} from {verb}:\n{self.output(verb)}"
            time.sleep(0.2)

    def write_rows(self, start: int, count: int) -> None:
        insert = self.session.prepare("INSERT INTO readme.orders (id, item) VALUES (?, ?)")
        for i in range(start, start + count):
            self.session.execute(insert, (i, f"item-{i}"))

    def count_rows(self) -> int:
        row = self.session.execute("SELECT count(*) FROM readme.orders").one()
        return int(row[0])

    def take_the_node_down(self) -> None:
        """'Stop Cassandra on the node and empty its data, commit log and hints directories.'"""
        self.app.stop()
        self.cluster.stop(1)
        wipe(self.cluster.specs[0])

    def bring_the_node_back(self) -> None:
        """'Start the node when the restore says COMPLETED.'"""
        self.cluster.start(1)
        wait_for_session(self.session)

    def stop_background(self) -> dict[str, int]:
        codes = {}
        for verb, proc in reversed(self.background.items()):
            proc.send_signal(signal.SIGTERM)
            try:
                codes[verb] = proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[verb] = proc.wait()
        return codes

    def close(self) -> None:
        self.stop_background()
        self.app.stop()
        self.driver.shutdown()


def test_every_readme_command_works_as_written(node: LocalCluster, tmp_path: Path) -> None:
    with smtp_receiver() as mail:
        operator = Operator(tmp_path, node, mail)
        try:
            operator.session.execute(
                "CREATE KEYSPACE readme WITH replication = "
                "{'class': 'SimpleStrategy', 'replication_factor': 1}"
            )
            operator.session.execute("CREATE TABLE readme.orders (id int PRIMARY KEY, item text)")
            operator.write_rows(0, ROWS_AT_SNAPSHOT)
            typed = []
            for command in commands():
                if command.text not in COVERED_ELSEWHERE:
                    operator.type(command)
                    typed.append(command.text)
            assert operator.count_rows() == ROWS_AT_SNAPSHOT + ROWS_AFTER_SNAPSHOT
            assert shutil.which("cassy-scheduler", path=operator.env["PATH"]) == str(
                tmp_path / "opt" / "cassy-scheduler" / "bin" / "cassy-scheduler"
            )
            assert operator.stop_background() == {"run": 0, "serve": 0}
        finally:
            operator.close()
    assert any(t.startswith("cassy-scheduler restore") for t in typed)
    assert any(t.startswith("cassy-scheduler backup cluster-wide") for t in typed)
