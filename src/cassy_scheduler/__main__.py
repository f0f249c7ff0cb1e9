"""Lets `python -m cassy_scheduler` behave like the `cassy-scheduler` command."""

from cassy_scheduler.cli import main

main()
