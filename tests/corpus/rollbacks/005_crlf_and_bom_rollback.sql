DROP TABLE crlf_table;
