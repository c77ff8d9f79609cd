-- Migration: 005_rename_display_name
-- Version: 2.0.0
-- Description: rename users.display_name to full_name (breaking: deploy code that reads full_name)
-- Author: sqlmig example
-- Date: 2026-11-21

SET LOCAL lock_timeout = '5s';

-- sqlmig: allow rename-column the breaking change of 2.0.0: code reading full_name ships with it
ALTER TABLE users RENAME COLUMN display_name TO full_name;
