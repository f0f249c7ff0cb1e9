"""Developer tools that live beside the package: a local Cassandra cluster, code generation."""
