"""The reference's database options of the `sequester_*` commands, read before Django starts."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path


def _manage(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARSEC_")}
    return subprocess.run([str(root / ".venv/bin/python"), str(root / "manage.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_db_option_mocked_refused(tmp_path):
    result = _manage("sequester_list_services", "--organization", "X", "--db", "MOCKED", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: MOCKED DB can not be used with sequester services"


def test_db_option_not_migrated(tmp_path):
    result = _manage("sequester_list_services", "--organization", "X", "--db", f"sqlite:///{tmp_path}/empty.sqlite",
                     cwd=tmp_path)
    assert result.returncode == 1
    assert "unapplied migration(s): run `python manage.py migrate`" in result.stderr
    assert "Traceback" not in result.stderr
