"""Layouts of the pboc family (one module per file kind; data only)."""
