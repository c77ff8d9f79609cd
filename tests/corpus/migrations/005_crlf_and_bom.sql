-- Version: 1.4.0
-- Description: CRLF line endings and a BOM
CREATE TABLE crlf_table (
    id int PRIMARY KEY,
    label text DEFAULT 'two
lines'
);
COMMENT ON TABLE crlf_table IS 'made on Windows; CRLF';
INSERT INTO crlf_table (id) VALUES (1);
