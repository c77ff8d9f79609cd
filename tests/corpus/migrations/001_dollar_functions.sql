-- Version: 1.0.0
-- Description: functions with $$ and $tag$ bodies; psql meta-commands that are accepted
\set ON_ERROR_STOP on
\echo creating functions
CREATE TABLE corpus_log (id serial PRIMARY KEY, msg text NOT NULL);

CREATE FUNCTION add_one(i integer) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    -- a comment; with a semicolon
    RETURN i + 1;
END;
$$;

CREATE FUNCTION tagged(t text) RETURNS text LANGUAGE plpgsql AS $body$
DECLARE
    s text := 'it''s; $$ not the end';
BEGIN
    RETURN t || s;
END
$body$;

INSERT INTO corpus_log (msg) VALUES (tagged('x') || add_one(41));
