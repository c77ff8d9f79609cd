-- Version: 1.5.0
-- Description: the hand-written BEGIN/COMMIT wrapper; an enum that gains a value
BEGIN;
CREATE TYPE mood AS ENUM ('sad', 'ok');
ALTER TYPE mood ADD VALUE 'happy';
CREATE TABLE moods (m mood);
COMMIT;
