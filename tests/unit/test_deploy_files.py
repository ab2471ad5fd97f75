"""docs/deploy/chatroom-server.service is a unit systemd accepts, running a real command.

(docs/deploy/nginx.conf is run for real by tests/process/test_nginx.py.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from chatroom_server.cli import main

from ..conftest import ROOT

UNIT = ROOT / "docs" / "deploy" / "chatroom-server.service"
EXEC = re.compile(r"^ExecStart=(\S+) (.*)$", re.MULTILINE)


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # The unit as installed, but for where this environment keeps the command.
    command = Path(sys.executable).parent / "chatroom-server"
    unit = tmp_path / UNIT.name
    found = EXEC.search(UNIT.read_text())
    assert found and found.group(1) == "/opt/chatroom/venv/bin/chatroom-server"
    unit.write_text(UNIT.read_text().replace(found.group(1), str(command)))
    checked = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (checked.returncode, checked.stderr) == (0, ""), checked.stderr


def test_the_units_command_line_is_one_serve_takes() -> None:
    found = EXEC.search(UNIT.read_text())
    assert found is not None
    command, *flags = found.group(2).split()
    assert command == "serve"
    usage = CliRunner().invoke(main, ["serve", "--help"]).output
    for flag in flags:
        assert flag in usage, flag
