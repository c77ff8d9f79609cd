-- Rollback of 005_rename_display_name (2.0.0)

ALTER TABLE users RENAME COLUMN full_name TO display_name;
