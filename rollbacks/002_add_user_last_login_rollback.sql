-- Rollback of 002_add_user_last_login (1.1.0)

ALTER TABLE users DROP COLUMN last_login_at;
