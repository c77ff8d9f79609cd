"""Writing files for the user: the next migration and its rollback (new), a project (scaffold)."""
