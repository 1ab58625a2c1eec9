"""The README and docs stay true: the settings table is the one the code generates, the README
stays short, and every link it makes points at a file of this repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_settings_table_in_docs_matches_the_settings_model() -> None:
    generated = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "settings_table.py")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    doc = (ROOT / "docs" / "settings.md").read_text()
    start = doc.index("<!-- settings-table:start -->\n") + len("<!-- settings-table:start -->\n")
    end = doc.index("<!-- settings-table:end -->")
    assert doc[start:end] == generated, "run: python scripts/settings_table.py --write"


def test_the_readme_is_short_and_links_only_to_files_of_this_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(doc.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            resolved = (doc.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), (doc.name, target)
            assert resolved.exists(), (doc.name, target)
