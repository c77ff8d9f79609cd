DELETE FROM corpus_log WHERE msg LIKE 'insert %';
DROP TABLE "odd;table";
DROP FUNCTION log_insert();
