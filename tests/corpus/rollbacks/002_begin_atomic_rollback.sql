DELETE FROM corpus_log WHERE msg LIKE 'total=%';
DROP FUNCTION total(integer, integer);
