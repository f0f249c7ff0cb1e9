"""Values from a request or a reply, quoted short enough for a message or a log line.

A status message that repeats a 3 MB `cluster_id` is 3 MB of trailer (gRPC caps metadata,
so the caller sees RESOURCE_EXHAUSTED instead of the refusal) and 3 MB of log. Both sides
quote what they did not write themselves through `echo`.
"""

from __future__ import annotations

from collections.abc import Iterable

ECHO_CHARS = 120
LIST_ITEMS = 10


def echo(value: str, limit: int = ECHO_CHARS) -> str:
    """`value` quoted; past `limit` characters cut, with its whole size said."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value.encode('utf-8', 'replace'))} bytes)"


def echo_text(text: str, limit: int = 1000) -> str:
    """Free text (a server's message) cut to `limit` characters, with its whole size said."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text.encode('utf-8', 'replace'))} bytes)"


def echo_list(values: Iterable[str], limit: int = LIST_ITEMS) -> str:
    """'a, b, c' of short values; past `limit` items, how many more there are."""
    items = list(values)
    shown = ", ".join(
        v if len(v) <= ECHO_CHARS and v.isprintable() else echo(v) for v in items[:limit]
    )
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown
