"""Notices to a local program: the facts in CASSY_* environment variables and JSON on stdin.

The program runs without a shell, with a timeout; a non-zero exit fails the attempt. It gets
the facts and a minimal environment (PATH, HOME, LANG and the locale), never the scheduler's
whole one, which holds secrets such as SMTP_PASSWORD; a target passes more by name with
`env = [...]`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping

from cassy_scheduler.config.targets import CommandChannel
from cassy_scheduler.notify import DeliveryError
from cassy_scheduler.notify.notice import Notice

_OUTPUT_LIMIT = 500
BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ")


def environment(notice: Notice) -> dict[str, str]:
    """CASSY_JOB, CASSY_OUTCOME, CASSY_SNAPSHOT_ID ...: each scalar fact, upper-cased."""
    env = {
        f"CASSY_{key.upper()}": _text(value)
        for key, value in notice.facts.items()
        if not isinstance(value, list | dict)
    }
    nodes = notice.facts.get("nodes")
    if isinstance(nodes, list):
        env["CASSY_NODES"] = " ".join(f"{n['node']}:{n['status']}" for n in nodes)
        env["CASSY_FAILED_NODES"] = " ".join(n["node"] for n in nodes if n["status"] == "FAILED")
    env["CASSY_EVENT"] = notice.event.value
    env["CASSY_FAILING"] = "1" if notice.failing else "0"
    return env


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


class CommandSender:
    """Runs the channel's program once per notice."""

    def __init__(self, channel: CommandChannel, environ: Mapping[str, str] | None = None) -> None:
        self._channel = channel
        source = os.environ if environ is None else environ
        passed = (*BASE_ENV, *channel.passed_env)
        self._environ = {name: source[name] for name in passed if name in source}

    def describe(self) -> str:
        return f"command {self._channel.argv[0]}"

    def send(self, notice: Notice) -> None:
        argv = list(self._channel.argv)
        payload = json.dumps(dict(notice.facts), default=str)
        try:
            done = subprocess.run(
                argv,
                input=payload,
                capture_output=True,
                text=True,
                env={**self._environ, **environment(notice)},
                timeout=self._channel.timeout.total_seconds(),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DeliveryError(
                f"command {argv[0]} did not finish within {self._channel.timeout}"
            ) from None
        except OSError as exc:
            raise DeliveryError(f"command {argv[0]} could not start: {exc}") from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()[-_OUTPUT_LIMIT:]
            raise DeliveryError(
                f"command {argv[0]} exited with {done.returncode}" + (f": {said}" if said else "")
            )
