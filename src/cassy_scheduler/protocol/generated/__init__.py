"""Code generated from proto/*.proto by tools/genproto.py: run `make proto`."""
