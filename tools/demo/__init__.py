"""`make demo`: the whole system on this machine, on embedded defaults.

A real local Cassandra cluster with sample data, the built-in server (filesystem storage,
SQLite metadata) and the scheduler daemon with an example config, shown live.
"""
