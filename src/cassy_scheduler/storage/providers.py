"""An obstore store for each object-store URI: `s3://BUCKET/PREFIX`, `az://CONTAINER/PREFIX`,
`gs://BUCKET/PREFIX`, with what `[storage]` says beside the URI.

Credentials come from the provider's own chain (environment variables, web identity,
instance or workload identity) unless the table named `*_env` / `*_file` keys; either way
obstore refreshes expiring ones. Retries: 5xx answers, 429 and throttling, and dropped
connections are retried with exponential backoff and jitter, per request (so per part).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from obstore.exceptions import BaseError
from obstore.store import AzureStore, GCSStore, S3Store

from cassy_scheduler.storage.bandwidth import BandwidthLimit
from cassy_scheduler.storage.errors import StorageOptionRefusedError, UnsupportedStorageError
from cassy_scheduler.storage.objectstore import ObjectStorage, provider_reason, scrub
from cassy_scheduler.storage.options import MIN_PART_SIZE, StorageOptions

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

OBJECT_SCHEMES = ("s3", "az", "gs")

MAX_RETRIES = 8
"""Retries of one request, within `retry_timeout`, waits doubling from 0.1 s to at most 15 s,
jittered."""


def _retries(options: StorageOptions) -> RetryConfig:
    return {
        "max_retries": MAX_RETRIES,
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=15),
            "base": 2,
        },
        "retry_timeout": timedelta(seconds=options.retry_timeout_s),
    }


_CLIENT: ClientConfig = {"connect_timeout": "10s", "timeout": "300s"}
"""A request may take 5 minutes (a part on a slow, throttled link), a connection 10 s."""

_ENCRYPTION = {"s3": "AES256", "kms": "aws:kms"}


def open_object_storage(options: StorageOptions) -> ObjectStorage:
    """The backend for an object-store URI; UnsupportedStorageError names what is wrong."""
    parts = urlsplit(options.uri)
    scheme = parts.scheme.lower()
    bucket = parts.netloc
    if not bucket:
        kind = "container" if scheme == "az" else "bucket"
        raise UnsupportedStorageError(
            f"storage URI {options.uri!r} names no {kind}: write {scheme}://{kind.upper()}/PREFIX"
        )
    if parts.query or parts.fragment:
        raise UnsupportedStorageError(
            f"storage URI {options.uri!r} has a query or fragment: put options in [storage]"
        )
    if options.part_size < MIN_PART_SIZE:
        raise UnsupportedStorageError(
            f"part_size {options.part_size} bytes is below the 5 MiB object stores accept "
            'for a part: write part_size = "8MiB" or more'
        )
    prefix = parts.path.strip("/") or None
    client: ClientConfig = {**_CLIENT}
    if options.endpoint is not None and options.endpoint.startswith("http://"):
        client["allow_http"] = True
    if scheme not in _STORES:
        raise UnsupportedStorageError(f"storage URI {options.uri!r}: no object store {scheme!r}")
    store_class, config_of = _STORES[scheme]
    try:
        store = store_class(
            bucket,
            prefix=prefix,
            config=config_of(options),
            client_options=client,
            retry_config=_retries(options),
        )
    except BaseError as exc:  # a key or option the provider's client refuses
        reason = scrub(provider_reason(exc), tuple(options.credentials.values()))
        raise StorageOptionRefusedError(
            f"storage {options.uri!r} cannot be opened: {reason}"
        ) from None
    return ObjectStorage(
        store,
        options.uri,
        part_size=options.part_size,
        concurrency=options.concurrency,
        storage_class=options.storage_class,
        bandwidth=BandwidthLimit(options.max_bandwidth) if options.max_bandwidth else None,
        secrets=tuple(options.credentials.values()),
    )


def _s3(options: StorageOptions) -> dict[str, Any]:
    config: dict[str, Any] = dict(options.credentials)
    if options.endpoint is not None:
        config["endpoint"] = options.endpoint
    if options.region is not None:
        config["region"] = options.region
    path_style = options.path_style if options.path_style is not None else bool(options.endpoint)
    config["virtual_hosted_style_request"] = not path_style
    if options.encryption is not None:
        config["server_side_encryption"] = _ENCRYPTION[options.encryption]
    if options.kms_key_id is not None:
        config["sse_kms_key_id"] = options.kms_key_id
    return config


def _azure(options: StorageOptions) -> dict[str, Any]:
    config: dict[str, Any] = dict(options.credentials)
    if options.account is not None:
        config["account_name"] = options.account
    if options.endpoint is not None:
        config["endpoint"] = options.endpoint
    return config


def _gcs(options: StorageOptions) -> dict[str, Any]:
    config: dict[str, Any] = dict(options.credentials)
    if options.endpoint is not None:
        config["base_url"] = options.endpoint
    return config


#: Each scheme's store and the obstore config (its own key names) it is given.
_STORES: dict[str, tuple[Any, Callable[[StorageOptions], dict[str, Any]]]] = {
    "s3": (S3Store, _s3),
    "az": (AzureStore, _azure),
    "gs": (GCSStore, _gcs),
}
