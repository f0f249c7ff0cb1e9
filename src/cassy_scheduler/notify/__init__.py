"""Telling people how backups went: rendering notices and delivering them to targets.

Submodules are imported directly; this package only holds the root of its exception family.
"""

from __future__ import annotations


class NotifyError(Exception):
    """Root of the notify package's errors; catch this to handle any of them."""


class DeliveryError(NotifyError):
    """One attempt to hand a notice to a target failed; the message says where and why."""
