"""ruff and mypy --strict stay clean (they are in the test extras)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from ..conftest import ROOT


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_ruff_lint_and_format() -> None:
    if shutil.which("ruff") is None and run_tool("ruff", "--version").returncode != 0:
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    lint = run_tool("ruff", "check", "chatroom_server", "tests", ".ci", "benchmarks")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run_tool("ruff", "format", "--check", "chatroom_server", "tests", ".ci", "benchmarks")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict() -> None:
    result = run_tool("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linters_are_the_versions_pinned_in_pyproject() -> None:
    import tomllib

    pins = {
        name: version
        for name, _, version in (
            spec.partition("==")
            for spec in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
                "optional-dependencies"
            ]["test"]
        )
        if version
    }
    assert set(pins) >= {"ruff", "mypy"}
    for tool in ("ruff", "mypy"):
        found = run_tool(tool, "--version").stdout
        assert pins[tool] in found.split(), (tool, found, pins[tool])


def test_no_test_file_over_600_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "tests").rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > 600
    }
    assert long == {}
