"""A real SMTP server on loopback that keeps every message as a .eml file.

The demo's scheduler mails its notices here over SMTP, the way it would mail an operator, so
people can read exactly what their inbox would get without any mail setup.
"""

from __future__ import annotations

import email
import email.policy
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tools.demo.services import free_port


class MailSink:
    """Writes each received message to `<directory>/<UTC time>-<seq>.eml`, atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self._count = 0
        self._newest_subject = ""
        self._arrived = threading.Condition()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._running = False

    @property
    def count(self) -> int:
        with self._arrived:
            return self._count

    @property
    def newest_subject(self) -> str:
        with self._arrived:
            return self._newest_subject

    def start(self) -> MailSink:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            self._controller.stop()
            self._running = False

    def wait_for(self, count: int, timeout_s: float) -> bool:
        """True once `count` messages have arrived, False if `timeout_s` passed first."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self._count >= count, timeout_s)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        raw = envelope.original_content or b""
        subject = email.message_from_bytes(raw, policy=email.policy.default)["Subject"]
        with self._arrived:
            name = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{self._count + 1:04d}.eml"
            # A reader polling the directory never sees half a message: write, then rename.
            tmp = self.directory / f".{name}.tmp"
            tmp.write_bytes(raw)
            os.replace(tmp, self.directory / name)
            self._count += 1
            self._newest_subject = str(subject or "(no subject)")
            self._arrived.notify_all()
        return "250 OK"
