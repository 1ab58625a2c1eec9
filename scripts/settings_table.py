"""Print the README settings table from the Settings model: `python scripts/settings_table.py`."""

from __future__ import annotations

from eventq.settings import ENV_PREFIX, Settings


def _default(name: str) -> str:
    field = Settings.model_fields[name]
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return f"`{value}`" if value else "(none)"
    if field.default is None:
        return "(none)"
    return f"`{field.default}`"


def main() -> None:
    """Print one markdown row per setting."""
    print("| variable | default | meaning |")
    print("| --- | --- | --- |")
    for name, field in Settings.model_fields.items():
        env = ENV_PREFIX + name.upper()
        print(f"| `{env}` | {_default(name)} | {field.description} |")


if __name__ == "__main__":
    main()
