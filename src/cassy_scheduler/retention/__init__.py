"""Retention: which backups a job keeps, and the prune that removes the rest."""
