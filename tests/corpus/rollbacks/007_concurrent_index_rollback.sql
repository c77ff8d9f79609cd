-- sqlmig: no-transaction
DROP INDEX CONCURRENTLY corpus_log_msg_idx;
