"""The built-in Cassy-compatible server: gRPC service, operations across nodes, metadata."""
