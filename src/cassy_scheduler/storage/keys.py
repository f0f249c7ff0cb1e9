"""Validation of object keys, shared by every backend so a key means the same everywhere.

A key is a '/'-separated relative path. Rejecting '.', '..', empty and absolute forms keeps
a filesystem backend inside its base directory and keeps object-store keys unambiguous.
"""

from __future__ import annotations

from cassy_scheduler.storage.errors import InvalidKeyError

TEMP_SUFFIX = ".partial"
"""Suffix of in-progress files; keys that look like them are refused so listings can hide them."""


def is_temporary_name(name: str) -> bool:
    """Whether a file name is one of the hidden names used while an object is being written."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def _check_segment(segment: str, whole: str, what: str) -> None:
    if segment == "":
        raise InvalidKeyError(
            f"{what} {whole!r} has an empty path segment: remove doubled or trailing '/'"
        )
    if segment in (".", ".."):
        raise InvalidKeyError(f"{what} {whole!r} contains {segment!r}: use a plain relative path")
    if is_temporary_name(segment):
        raise InvalidKeyError(
            f"{what} {whole!r} has a segment {segment!r} shaped like a temporary file "
            f"(leading '.' and {TEMP_SUFFIX!r} suffix): rename it"
        )
    if "\\" in segment or "\x00" in segment:
        raise InvalidKeyError(f"{what} {whole!r} contains a backslash or NUL: use '/' only")


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a valid object key, else raise InvalidKeyError."""
    if not key:
        raise InvalidKeyError("object key is empty: give a relative path such as 'a/b.db'")
    if key.startswith("/"):
        raise InvalidKeyError(f"object key {key!r} is absolute: drop the leading '/'")
    for segment in key.split("/"):
        _check_segment(segment, key, "object key")
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` unchanged if it can start keys, else raise InvalidKeyError.

    A prefix is a key with an optional trailing '/', or a partial last segment; '' means all.
    """
    if not prefix:
        return prefix
    if prefix.startswith("/"):
        raise InvalidKeyError(f"key prefix {prefix!r} is absolute: drop the leading '/'")
    segments = prefix.split("/")
    last = segments.pop()
    for segment in segments:
        _check_segment(segment, prefix, "key prefix")
    if last in (".", ".."):
        raise InvalidKeyError(f"key prefix {prefix!r} ends in {last!r}: use a plain relative path")
    return prefix


def join_key(prefix: str, relative_key: str) -> str:
    """Join a prefix ending in '/' (or empty) and a relative key, validating the result."""
    if prefix and not prefix.endswith("/"):
        raise InvalidKeyError(f"key prefix {prefix!r} must end with '/' to be joined with a key")
    return validate_key(prefix + relative_key)
