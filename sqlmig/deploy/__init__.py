"""Around a deploy: pg_dump backups, waiting for the database, version ranges for check."""
