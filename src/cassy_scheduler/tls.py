"""The PEM files of a TLS channel to a Cassy server: one value the scheduler's config reads
from [server.tls] and the client opens its channel with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsConfig:
    """Without ca_file the system's trusted roots are used; without cert_file and key_file
    the channel is server-authenticated only."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
