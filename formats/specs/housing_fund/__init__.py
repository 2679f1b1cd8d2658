"""Layouts of the housing_fund family (one module per file kind; data only)."""
