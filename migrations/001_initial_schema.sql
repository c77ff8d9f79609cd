-- Migration: 001_initial_schema
-- Version: 1.0.0
-- Description: users and their login identities
-- Author: sqlmig example
-- Date: 2026-11-21

CREATE TABLE users (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email        text        NOT NULL,
    display_name text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE user_identities (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider     text        NOT NULL,
    provider_uid text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT user_identities_provider_uid_key UNIQUE (provider, provider_uid)
);

-- Foreign keys are not indexed automatically; deleting a user scans identities without it.
CREATE INDEX user_identities_user_id_idx ON user_identities (user_id);
