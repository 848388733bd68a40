"""The README is part of the product: its generated parts must match the code."""

from pathlib import Path

from engine.app.settings import settings_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_settings_table_matches_the_settings() -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end].strip() == settings_markdown()
