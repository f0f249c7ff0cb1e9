"""Why the server refuses a request or a node's work fails, one class a kind.

The servicer gives each kind its gRPC status from one table (servicer.STATUS_OF), as the
client maps statuses back to kinds of its own; below the servicer, nothing knows of gRPC.
Every message says what is wrong and what to send or do instead.
"""

from __future__ import annotations


class OperationError(Exception):
    """A request the server refuses, or node work that cannot go on."""


class InvalidRequestError(OperationError):
    """The request itself is wrong: a missing or malformed field, an unknown code or id."""


class PreconditionError(OperationError):
    """The request is well formed, but the cluster or the nodes are not in a state for it."""


class ApplicationsUnavailableError(PreconditionError):
    """A cluster-wide snapshot cannot start: no application instances are configured or found."""


class NodesNotRestorableError(PreconditionError):
    """Some target nodes still run Cassandra or hold data; nothing was written."""


class NodesBusyError(OperationError):
    """Another backup or restore still runs on some target nodes (or the server is stopping)."""


class NodesNotLiveError(OperationError):
    """Some target nodes are not Up/Normal, so the backup was recorded as FAILED."""


class NotOfferedError(OperationError):
    """This server does not do what was asked (a restore, on a server set up without one)."""


class ServerStoppingError(OperationError):
    """The server stops; work not yet done is given up and its rows recorded FAILED."""


class NodePreparationError(OperationError):
    """A node could not be made ready for a cluster-wide cut; nothing was paused."""


#: The reasons recorded on rows the server gives up: it stops, or it was restarted.
SERVER_STOPPED = "server stopped during the operation"
RESTARTED = "server restarted during the operation"


def reason_of(error: BaseException | None) -> str:
    """The first line of an error, short enough for a history row, with the operating
    system's cause first ("No space left on device: writing ..."), since a reason is cut
    short on its way to people and a key or a path can fill what is left."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else repr(error)
    cause = _os_cause(error)
    if cause and cause not in line[: len(cause) + 20]:  # "[Errno 28] No space ..." is fine
        line = f"{cause}: {line}"
    return line[:500]


def _os_cause(error: BaseException | None) -> str | None:
    """The strerror of the first OSError behind `error`, if any."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.strerror:
            return str(error.strerror)
        error = error.__cause__ or error.__context__
        seen += 1
    return None


class HostNotAllowedError(OperationError):
    """RegisterCluster named a host (or the cluster reported a node) outside [access]
    cluster_hosts; nothing was registered."""
