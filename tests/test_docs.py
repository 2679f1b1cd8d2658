"""The analysts' documentation is generated from the one declaration of the tables and views: it must be current."""
from pathlib import Path

from duizhang.views import readme_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "tables.md"


def test_docs_tables_is_generated_from_the_declaration():
    assert DOC.read_text().endswith(readme_markdown() + "\n"), (
        "docs/tables.md is out of date: regenerate it from duizhang.views.readme_markdown()")
