"""The migration lock, one protocol (guard) over the session lock, the transaction lock and none."""
