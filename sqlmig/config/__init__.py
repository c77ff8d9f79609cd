"""Settings: resolve (flags, environment, sqlmig.toml), redaction, durations."""
