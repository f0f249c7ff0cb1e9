"""cassy-scheduler: scheduled, verified and notified Cassandra backups through Cassy's API."""


def version() -> str:
    """The installed version; read when asked, since importlib.metadata costs a tenth of a
    second at every start of the command."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("cassy-scheduler")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> str:
    """`cassy_scheduler.__version__`, read when asked, as `version()` is."""
    if name == "__version__":
        return version()
    raise AttributeError(f"module 'cassy_scheduler' has no attribute {name!r}")
