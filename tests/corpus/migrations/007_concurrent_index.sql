-- Version: 1.6.0
-- Description: a no-transaction file: two statements that cannot run in a transaction
-- sqlmig: no-transaction
CREATE INDEX CONCURRENTLY corpus_log_msg_idx ON corpus_log (msg);
VACUUM (ANALYZE) corpus_log;
