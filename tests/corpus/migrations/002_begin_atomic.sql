-- Version: 1.1.0
-- Description: a SQL-standard function body with semicolons and CASE … END inside
CREATE FUNCTION total(a integer, b integer) RETURNS integer
LANGUAGE sql IMMUTABLE
BEGIN ATOMIC
    SELECT CASE WHEN a IS NULL THEN 0 ELSE a END + b;
END;

INSERT INTO corpus_log (msg) VALUES ('total=' || total(1, 2));
