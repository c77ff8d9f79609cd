-- Migration: 003_create_audit_events
-- Version: 1.2.0
-- Description: an append-only audit trail of user actions
-- Author: sqlmig example
-- Date: 2026-11-21

CREATE TABLE audit_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint      REFERENCES users (id) ON DELETE SET NULL,
    action     text        NOT NULL CHECK (action <> ''),
    payload    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Keep the trail append-only: a rule turns UPDATE and DELETE into no-ops.
CREATE RULE audit_events_no_update AS ON UPDATE TO audit_events DO INSTEAD NOTHING;
CREATE RULE audit_events_no_delete AS ON DELETE TO audit_events DO INSTEAD NOTHING;
