"""The psql workflow: one script that does what up/down would, for docker exec and review."""
