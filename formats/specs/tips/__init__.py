"""Layouts of the tips family (one module per file kind; data only)."""
