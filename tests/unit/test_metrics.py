"""The metrics endpoint scraped over HTTP, and heartbeat pings to a loopback receiver."""

from __future__ import annotations

import dataclasses
import urllib.request
from datetime import timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from cassy_scheduler.history import RunHistory
from cassy_scheduler.jobtype import JobType
from cassy_scheduler.notify.heartbeat import HeartbeatPinger
from cassy_scheduler.records import Failure, Outcome, RunStart
from cassy_scheduler.runtime import Runtime
from tests.receivers import http_receiver
from tests.unit.fakes import T0, FakeClock
from tests.unit.notify_fakes import config, result

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(host: str, port: int) -> Samples:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_endpoint_shows_each_jobs_last_success_outcome_duration_runs_and_next_run(
    tmp_path: Path,
) -> None:
    settings = config(tmp_path, "", "", scheduler='metrics_listen = "127.0.0.1:0"')
    clock = FakeClock()
    with RunHistory.open(settings.runtime.history_path, clock) as history:
        old = history.start_run("nightly", "snapshot", T0 - timedelta(hours=1))
        history.finish_run(old.run_id, Outcome.SUCCEEDED)
    with Runtime(settings, clock) as runtime:
        daemon = runtime.daemon()
        daemon.start()
        address = runtime.serve_metrics()
        assert address is not None and address[0] == "127.0.0.1"
        before = scrape(*address)
        runtime.metrics.run_started(RunStart(2, "nightly", JobType.SNAPSHOT, T0, T0))
        during = scrape(*address)
        failed = result(Outcome.FAILED, run_id=2, failed=("127.0.0.2",))
        runtime.metrics.run_finished(failed)
        runtime.metrics.run_finished(result(Outcome.SUCCEEDED, run_id=3))
        skipped = result(Outcome.SKIPPED, run_id=4, failure=Failure.ALREADY_RUNNING)
        runtime.metrics.run_finished(skipped)
        after = scrape(*address)
    job = (("job", "nightly"),)
    seeded = before[("cassy_scheduler_last_success_timestamp_seconds", job)]
    assert seeded == T0.timestamp()  # when the recorded run ended
    assert (
        before[("cassy_scheduler_next_run_timestamp_seconds", job)]
        == (T0 + timedelta(minutes=30)).timestamp()
    )
    assert during[("cassy_scheduler_run_in_progress", job)] == 1
    assert after[("cassy_scheduler_run_in_progress", job)] == 0
    finished = result().finished_at
    assert finished is not None
    assert after[("cassy_scheduler_last_success_timestamp_seconds", job)] == finished.timestamp()
    assert after[("cassy_scheduler_last_run_duration_seconds", job)] == 187
    outcome = {
        dict(labels)["outcome"]: value
        for (name, labels), value in after.items()
        if name == "cassy_scheduler_last_run_outcome"
    }
    assert outcome["skipped"] == 1 and outcome["succeeded"] == 0 and outcome["failed"] == 0
    runs = {
        dict(labels)["outcome"]: value
        for (name, labels), value in after.items()
        if name == "cassy_scheduler_runs_total"
    }
    assert runs == {"failed": 1, "succeeded": 1, "skipped": 1}


def test_heartbeat_pings_start_success_and_fail(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        settings = config(tmp_path, "", f'heartbeat_url = "{receiver.url}/ping/abc"')
        pinger = HeartbeatPinger(settings, FakeClock())
        pinger.run_started(RunStart(1, "nightly", JobType.SNAPSHOT, T0, T0))
        pinger.run_finished(result())
        pinger.run_finished(result(Outcome.TIMED_OUT, failure=Failure.TIMED_OUT))
        pinger.run_finished(dataclasses.replace(result(), job_name="other"))  # no heartbeat_url
        pinger.close()
        paths = [path for path, _, _ in receiver.wait_for(3)]
    assert paths == ["/ping/abc/start", "/ping/abc", "/ping/abc/fail"]
