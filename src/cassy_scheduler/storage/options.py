"""How to reach an object store: what `[storage]` says beside its URI, checked and with the
credentials it names already read (never the credentials' text in the config file itself)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

DEFAULT_PART_SIZE = 8 << 20
"""8 MiB: a file up to this size is one PUT (its SHA-256 then rides in the object's metadata
too); larger files go as multipart uploads of parts this size. Memory in flight is about
4 files x concurrency x part_size."""
MIN_PART_SIZE = 5 << 20
"""S3's smallest part (but the last): a smaller part_size would fail at the second part."""
DEFAULT_CONCURRENCY = 4
"""Requests in flight per file being sent or fetched (parts, ranges)."""
DEFAULT_RETRY_TIMEOUT_S = 180.0
"""How long one request is retried (throttled, 5xx, reset) before its node's backup fails."""

Encryption = Literal["s3", "kms"]
"""Server-side encryption: "s3" is SSE-S3 (AES256, keys held by the provider), "kms" SSE-KMS
with `kms_key_id`."""


@dataclass(frozen=True)
class StorageOptions:
    """The `[storage]` table: `uri` and, for object stores, how to reach them.

    `credentials` holds provider keys (obstore's config names, e.g. "secret_access_key")
    read from `*_env` / `*_file` keys; it never shows in a repr, a log or an error.
    """

    uri: str
    endpoint: str | None = None
    region: str | None = None
    path_style: bool | None = None  # None: path-style when an endpoint is given
    storage_class: str | None = None
    encryption: Encryption | None = None
    kms_key_id: str | None = None
    account: str | None = None  # Azure's storage account
    concurrency: int = DEFAULT_CONCURRENCY
    part_size: int = DEFAULT_PART_SIZE
    max_bandwidth: int | None = None  # bytes/s for every transfer of one process together
    retry_timeout_s: float = DEFAULT_RETRY_TIMEOUT_S
    credentials: MappingProxyType[str, str] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )
    #: Client-side encryption's key-encryption keys ([storage.client_encryption]): the first
    #: seals every object written, every one opens; none: objects are stored as they are.
    client_keys: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def scheme(self) -> str:
        return self.uri.partition("://")[0].lower()

    def to_document(self) -> dict[str, object]:
        """Every field as JSON data, credentials included: for a node program's request,
        which travels on its SSH session's input (never on a command line or in a log)."""
        document = {name: getattr(self, name) for name in self.__dataclass_fields__}
        document["credentials"] = dict(self.credentials)
        document["client_keys"] = [key.hex() for key in self.client_keys]
        return document

    @classmethod
    def from_document(cls, document: dict[str, object]) -> StorageOptions:
        values = {k: v for k, v in document.items() if k in cls.__dataclass_fields__}
        values["credentials"] = MappingProxyType(dict(document.get("credentials") or {}))  # type: ignore[call-overload]
        keys = document.get("client_keys") or []
        values["client_keys"] = tuple(bytes.fromhex(str(key)) for key in keys)  # type: ignore[attr-defined]
        return cls(**values)  # type: ignore[arg-type]
