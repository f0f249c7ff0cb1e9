"""The one error the local cluster tool raises: it always says what failed and what to do."""


class LocalClusterError(RuntimeError):
    """Starting, reaching or stopping the local cluster failed."""
