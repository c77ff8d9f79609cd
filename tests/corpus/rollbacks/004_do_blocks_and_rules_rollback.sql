DROP VIEW recent_log;
DELETE FROM corpus_log WHERE msg LIKE 'do block saw %';
