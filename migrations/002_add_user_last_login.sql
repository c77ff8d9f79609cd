-- Migration: 002_add_user_last_login
-- Version: 1.1.0
-- Description: remember when a user last logged in (additive, nullable: no table rewrite)
-- Author: sqlmig example
-- Date: 2026-11-21

-- Adding a nullable column is instant, but it takes an ACCESS EXCLUSIVE lock on users: give up
-- after 5 s instead of queueing behind a long query while every query on users queues behind us.
SET LOCAL lock_timeout = '5s';

ALTER TABLE users ADD COLUMN last_login_at timestamptz;

COMMENT ON COLUMN users.last_login_at IS 'set by the application at each successful login';
