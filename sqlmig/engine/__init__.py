"""The operations: plan (pure), execute (a transaction per step), up/down/status and the rest."""
