"""The project's files, read and checked before any connection."""
