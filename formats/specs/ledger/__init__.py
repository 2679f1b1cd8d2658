"""Layouts of the ledger family (one module per file kind; data only)."""
