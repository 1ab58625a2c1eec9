"""The settings table of docs/settings.md, from the Settings model.

`python scripts/settings_table.py` prints it; `--write` rewrites the part of docs/settings.md
between the `<!-- settings-table:start -->` and `<!-- settings-table:end -->` markers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventq.settings import ENV_PREFIX, Settings  # noqa: E402 - needs the repo on sys.path

SETTINGS_DOC = ROOT / "docs" / "settings.md"
START = "<!-- settings-table:start -->\n"
END = "<!-- settings-table:end -->"


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return f"`{value}`" if value else "(none)"
    if field.default is None:
        return "(none)"
    return f"`{field.default}`"


def table() -> str:
    """Return the markdown table: one row per setting, its variable, default and meaning."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{ENV_PREFIX + name.upper()}` | {_default(name)} | {field.description} |")
    return "\n".join(rows) + "\n"


def rewrite(text: str) -> str:
    """Return `text` with the part between the markers replaced by the current table."""
    start = text.index(START) + len(START)
    end = text.index(END)
    return text[:start] + table() + text[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write",
        action="store_true",
        help=f"rewrite the table in {SETTINGS_DOC.relative_to(ROOT)}",
    )
    if parser.parse_args().write:
        SETTINGS_DOC.write_text(rewrite(SETTINGS_DOC.read_text()))
    else:
        print(table(), end="")


if __name__ == "__main__":
    main()
