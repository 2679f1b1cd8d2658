"""Layouts of the utility family (one module per file kind; data only)."""
