"""PostgreSQL itself: connecting, the embedded server, the history table, catalog snapshots."""
