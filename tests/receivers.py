"""Real receivers on loopback for notification tests: an SMTP server and an HTTP server.

Both run in threads of the test process and keep what they receive for the test to read.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on right now (for a receiver, or for "the server is down")."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        return str(body.get_content())  # type: ignore[attr-defined]


@dataclass
class SmtpReceiver:
    """Mail received so far; `wait_for(n)` blocks until n messages have arrived."""

    port: int
    mails: list[Mail] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: object, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._arrived:
            self.mails.append(Mail(str(envelope.mail_from), tuple(envelope.rcpt_tos), parsed))
            self._arrived.notify_all()
        return "250 OK"

    def authenticate(
        self, server: object, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = (data.login.decode(), data.password.decode())
        self.logins.append(login)
        return AuthResult(success=login == ("backup", "s3cret"))

    def wait_for(self, count: int, timeout_s: float = 30) -> list[Mail]:
        with self._arrived:
            ok = self._arrived.wait_for(lambda: len(self.mails) >= count, timeout_s)
        assert ok, f"expected {count} mail(s), got {len(self.mails)}"
        return list(self.mails)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the openssl command."""
    cert, key = directory / "smtp.pem", directory / "smtp.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def smtp_receiver(
    *, auth: bool = False, tls: tuple[Path, Path] | None = None, starttls: bool = False
) -> Iterator[SmtpReceiver]:
    """An SMTP server on loopback; with `tls` (cert, key) it speaks implicit TLS, or STARTTLS
    (required) when `starttls` is set."""
    receiver = SmtpReceiver(free_port())
    options: dict[str, Any] = {}
    if auth:
        options = {"authenticator": receiver.authenticate, "auth_require_tls": False}
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        if starttls:
            options |= {"tls_context": context, "require_starttls": True}
        else:
            options |= {"ssl_context": context}
    controller = Controller(receiver, hostname=LOOPBACK, port=receiver.port, **options)
    controller.start()
    try:
        yield receiver
    finally:
        controller.stop()


@dataclass
class HttpReceiver:
    """Requests received so far: (path, headers, body)."""

    port: int
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def add(self, path: str, headers: dict[str, str], body: bytes) -> None:
        with self._arrived:
            self.requests.append((path, headers, body))
            self._arrived.notify_all()

    def wait_for(
        self, count: int, timeout_s: float = 30
    ) -> list[tuple[str, dict[str, str], bytes]]:
        with self._arrived:
            ok = self._arrived.wait_for(lambda: len(self.requests) >= count, timeout_s)
        assert ok, f"expected {count} request(s), got {len(self.requests)}"
        return list(self.requests)

    def json(self, index: int) -> Any:
        return json.loads(self.requests[index][2])


@contextmanager
def http_receiver() -> Iterator[HttpReceiver]:
    holder: list[HttpReceiver] = []

    class Handler(BaseHTTPRequestHandler):
        def _take(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            holder[0].add(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        do_POST = _take  # noqa: N815
        do_GET = _take  # noqa: N815
        do_HEAD = _take  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    holder.append(HttpReceiver(int(server.server_address[1])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def eventually(condition: Any, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung mail server); the
    connections are held until the block ends. Yields the port."""
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(16)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)

    thread = threading.Thread(target=accept, name="silent-server", daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        done.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()
