"""Judging files and rollbacks without applying them for real: lint, verify."""
