-- Rollback of 003_create_audit_events (1.2.0): the rules go with the table.

DROP TABLE audit_events;
