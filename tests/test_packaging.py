"""The wheel a user installs holds every module, the migrations and the browser client.

An editable install (what the tests run on) finds modules in the source tree whatever the
packaging says, so only a real wheel shows a subpackage missing from ``pyproject.toml``.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_every_module_the_migrations_and_the_client(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("livesync-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {
        f"livesync/{path.relative_to(ROOT / 'livesync').as_posix()}"
        for path in (ROOT / "livesync").rglob("*.py")
    }
    assert modules - names == set()
    migrations = {
        f"livesync/migrations/{path.relative_to(ROOT / 'migrations').as_posix()}"
        for path in (ROOT / "migrations").rglob("*.py")
    }
    assert migrations - names == set()
    client = {f"livesync/client/{path.name}" for path in (ROOT / "client-js" / "src").iterdir()}
    assert client - names == set()
    assert "livesync/py.typed" in names
