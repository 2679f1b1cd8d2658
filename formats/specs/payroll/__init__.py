"""Layouts of the payroll family (one module per file kind; data only)."""
