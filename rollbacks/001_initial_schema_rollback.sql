-- Rollback of 001_initial_schema (1.0.0): drops both tables and everything in them.

DROP TABLE user_identities;
DROP TABLE users;
