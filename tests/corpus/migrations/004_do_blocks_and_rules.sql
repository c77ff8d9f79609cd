-- Version: 1.3.0
-- Description: DO blocks, nested comments, a view with a rule
/* a nested /* comment; with semicolons; */ still a comment; */
DO $$
DECLARE n int;
BEGIN
    SELECT count(*) INTO n FROM corpus_log;
    INSERT INTO corpus_log (msg) VALUES ('do block saw ' || n || ' rows; ok');
END
$$;
CREATE VIEW recent_log AS SELECT id, msg FROM corpus_log ORDER BY id DESC; -- trailing; comment
CREATE RULE recent_log_no_insert AS ON INSERT TO recent_log DO INSTEAD NOTHING;
-- a last comment without a newline at the end;