-- Rollback of 004_index_audit_events_created_at (1.2.1)
-- sqlmig: no-transaction

DROP INDEX CONCURRENTLY IF EXISTS audit_events_created_at_idx;
