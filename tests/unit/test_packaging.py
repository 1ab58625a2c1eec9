"""Installing is quiet: setuptools builds the project without a warning and ships its data files.

`pip install -e .` (and so `make install`) runs setuptools' PEP 517 hooks in a subprocess,
catches the Python warnings they raise and prints each (pip shows them even with `--quiet`, as
`BuildBackendWarning`). These tests call the same hooks, with the same setuptools, on a copy of
the project's sources (the checkout gets no `build/` or `*.egg-info`), and collect the same
warnings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGES = ("eventq", "eventq_cli", "worker", "producers", "fake_hubspot")

# writes {"wheel": name, "warnings": ["Category: first line", ...]} to argv[3]
_HOOK = """
import json, sys, warnings
hook, out, report = sys.argv[1:]  # read first: setuptools rewrites sys.argv
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from setuptools import build_meta
    wheel = getattr(build_meta, hook)(out)
said = [f"{w.category.__name__}: {str(w.message).strip().splitlines()[0]}" for w in caught]
open(report, "w").write(json.dumps({"wheel": wheel, "warnings": said}))
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what the build reads: pyproject, README and the packages' sources."""
    copy = tmp_path_factory.mktemp("project")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return copy


def _build(project: Path, hook: str, out: Path) -> tuple[Path, list[str]]:
    """Run one setuptools build hook; returns the wheel and the warnings it raised."""
    report = out / "report.json"
    subprocess.run(
        [sys.executable, "-c", _HOOK, hook, str(out), str(report)],
        cwd=project,
        capture_output=True,
        check=True,
        timeout=60,
    )
    done = json.loads(report.read_text())
    return out / done["wheel"], done["warnings"]


def test_an_editable_install_prints_no_setuptools_warning(project: Path, tmp_path: Path) -> None:
    _, warned = _build(project, "build_editable", tmp_path)

    assert warned == []


def test_a_wheel_ships_the_lua_scripts_the_schemas_and_the_admin_page_quietly(
    project: Path, tmp_path: Path
) -> None:
    wheel, warned = _build(project, "build_wheel", tmp_path)

    assert warned == []
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "eventq/lua/create_job.lua",
        "eventq/data/marketing_events_schemas.json",
        "producers/static/admin.html",
        "eventq/py.typed",
    }
    assert expected <= names
    assert any(name.startswith("worker/lua/") and name.endswith(".lua") for name in names)
    license_line = "License-Expression: MIT"
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert license_line in zipfile.ZipFile(wheel).read(metadata).decode()
