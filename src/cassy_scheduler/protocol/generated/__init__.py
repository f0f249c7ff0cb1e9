"""Code generated from proto/cassy.proto by tools/genproto.py: run `make proto`."""
