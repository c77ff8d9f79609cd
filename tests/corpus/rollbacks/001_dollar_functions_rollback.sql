DROP FUNCTION tagged(text);
DROP FUNCTION add_one(integer);
DROP TABLE corpus_log;
