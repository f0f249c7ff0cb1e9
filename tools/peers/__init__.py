"""Real protocol peers for tests, demos and benchmarks, installed once into the cache.

Each is fetched from the registry it is published on (the Go module proxy, npm, PyPI,
Debian) at a pinned version, kept under `cassy-scheduler`'s cache directory, and started on
loopback by the code that needs it.
"""
