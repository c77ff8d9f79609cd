-- Migration: 004_index_audit_events_created_at
-- Version: 1.2.1
-- Description: index audit events by time without blocking writers
-- Author: sqlmig example
-- Date: 2026-11-21
-- sqlmig: no-transaction

-- CONCURRENTLY cannot run in a transaction, hence the no-transaction header. If this fails
-- part-way the row stays `failed` and an INVALID index may remain: drop it, then
-- `sqlmig repair --remove 1.2.1` and run `up` again.
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_events_created_at_idx
    ON audit_events (created_at);
