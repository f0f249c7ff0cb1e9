"""The composition root: a config made live, its client, state, runner, notifications and
metrics, wired together.

The daemon and the one-shot commands start the same way, so they agree on where history and
locks live and on how the server is reached. Everything below this module meets here only:
the engine (scheduling/), notifications (notify/) and metrics do not import each other.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from cassy_scheduler.client import CassyClient
from cassy_scheduler.clock import Clock, SystemClock
from cassy_scheduler.closing import Closing
from cassy_scheduler.config.model import SchedulerConfig, ServerConfig
from cassy_scheduler.metrics import SchedulerMetrics
from cassy_scheduler.notify.dispatcher import Dispatcher
from cassy_scheduler.notify.heartbeat import HeartbeatPinger
from cassy_scheduler.notify.journal import NoticeJournal
from cassy_scheduler.notify.senders import make_sender
from cassy_scheduler.notify.staleness import StalenessWatch
from cassy_scheduler.notify.worker import SenderFactory
from cassy_scheduler.records import RunObserver
from cassy_scheduler.scheduling.daemon import Daemon
from cassy_scheduler.scheduling.prune import PruneClient, Pruner
from cassy_scheduler.scheduling.reconcile import look_up, settle_found
from cassy_scheduler.scheduling.runner import Runner
from cassy_scheduler.scheduling.state import SchedulerState

_log = logging.getLogger(__name__)


def open_client(server: ServerConfig) -> CassyClient:
    """A client for the configured server; calls time out after call_deadline."""
    return CassyClient(
        server.address,
        tls=server.tls,
        timeout_s=server.call_deadline.total_seconds(),
        token=server.token,
    )


#: How long notices still pending may take once a command's run is over (cron's one-shots
#: wait longer: their failure notice is the point) and once the daemon's runs are stopped.
ONE_SHOT_NOTIFY_WAIT_S = 60.0
DAEMON_NOTIFY_WAIT_S = 15.0
_BACKGROUND_JOIN_S = 5.0


class Runtime(Closing):
    """A config made live: client, state and runner; close() when done."""

    def __init__(
        self,
        config: SchedulerConfig,
        clock: Clock | None = None,
        observers: Sequence[RunObserver] = (),
        senders: SenderFactory = make_sender,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.notify_wait_s = ONE_SHOT_NOTIFY_WAIT_S
        self._stopping = threading.Event()
        self._background: list[threading.Thread] = []
        self.state = SchedulerState.open(config.runtime, self.clock)
        try:
            self.journal = NoticeJournal.open(config.runtime.history_path)
        except Exception:
            self.state.close()
            raise
        try:
            self._clients = [open_client(config.server)]
        except Exception:
            self.journal.close()
            self.state.close()
            raise
        history = self.state.history
        self.notifier = Dispatcher(config, history, self.journal, self.clock, senders)
        self.staleness = StalenessWatch(config, history, self.journal, self.clock, self.notifier)
        self.heartbeat = HeartbeatPinger(config, self.clock)
        self.metrics = SchedulerMetrics()
        self.runner = Runner(
            self.client,
            self.state.history,
            self.state.locks,
            self.clock,
            [self.notifier, self.staleness, self.heartbeat, self.metrics, *observers],
        )
        self._observers = tuple(observers)
        self.pruner = self.pruner_for(lambda: self.client)

    @property
    def client(self) -> CassyClient:
        return self._clients[-1]

    def pruner_for(self, client: Callable[[], PruneClient]) -> Pruner:
        """A Pruner asking `client`, recorded, notified and measured like every run."""
        return Pruner(
            client,
            self.state.history,
            self.clock,
            observers=[self.notifier, self.metrics, *self._observers],
            adopt=self.notifier.adopt,
            stored=self.metrics.backups_stored,
            jobs=lambda: self.config.jobs,
            locks=self.state.locks,
        )

    def daemon(self) -> Daemon:
        self.notify_wait_s = DAEMON_NOTIFY_WAIT_S
        self._settle_interrupted()
        daemon = Daemon(
            self.config,
            self.runner,
            self.state.history,
            self.clock,
            on_reload=self._reloaded,
            every_turn=[self.staleness.tick],
            alerts=self.notifier,
            pruner=self.pruner,
        )
        self.metrics.use_schedule(
            lambda: {name: fire.run_at for name, fire in daemon.next_fires().items()}
        )
        return daemon

    def _settle_interrupted(self) -> None:
        """What the backups of runs a stopped daemon left became: looked up now, before the
        daemon fires a run that could be taken for one of them; waited for in the
        background."""
        waits = {job.name: (job.wait_timeout, job.poll_interval) for job in self.config.jobs}
        try:
            found = look_up(self.state.history, self.client)
        except Exception:  # the schedule must go on whatever this finds
            _log.exception("interrupted runs not looked up")
            return
        if not found:
            return

        def settle() -> None:
            try:
                settle_found(
                    self.state.history, self.client, self.clock, self._stopping, found, waits
                )
            except Exception:  # the schedule must go on whatever this finds
                _log.exception("interrupted runs not settled")

        thread = threading.Thread(target=settle, name="settle-interrupted", daemon=True)
        self._background.append(thread)
        thread.start()

    def serve_metrics(self) -> tuple[str, int] | None:
        """Expose the metrics where [scheduler] metrics_listen says; None when it is unset."""
        listen = self.config.runtime.metrics_listen
        if not listen:
            return None
        self.metrics.seed(self.config.jobs, self.state.history)
        return self.metrics.serve(listen)

    def _reloaded(self, old: SchedulerConfig, new: SchedulerConfig) -> None:
        self.config = new
        self.notifier.use_config(new)
        self.staleness.use_config(new)
        self.heartbeat.use_config(new)
        if new.server != old.server:
            # Runs in flight keep the old channel; it is closed with the others at the end.
            self._clients.append(open_client(new.server))
            self.runner.use_client(self.client)

    def close(self) -> None:
        self._stopping.set()
        for thread in self._background:
            thread.join(_BACKGROUND_JOIN_S)
        self.metrics.close()
        self.heartbeat.close()
        self.notifier.close(self.notify_wait_s)
        for client in self._clients:
            client.close()
        self.journal.close()
        self.state.close()
