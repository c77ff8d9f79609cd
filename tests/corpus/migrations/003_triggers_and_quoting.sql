-- Version: 1.2.0
-- Description: a trigger, a quoted identifier with a semicolon, E'' strings
CREATE TABLE "odd;table" ("semi;colon" text, note text);

CREATE FUNCTION log_insert() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO corpus_log (msg) VALUES (format('insert %s', NEW."semi;colon"));
    RETURN NEW;
END $fn$;

CREATE TRIGGER odd_table_log AFTER INSERT ON "odd;table"
    FOR EACH ROW EXECUTE FUNCTION log_insert();

INSERT INTO "odd;table" VALUES ('a;b', E'tab\there; and a quote \' done');
