"""cassy-scheduler: scheduled, verified and notified Cassandra backups through Cassy's API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cassy-scheduler")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
