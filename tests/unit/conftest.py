"""The unit layer starts no server and opens no database."""

from __future__ import annotations

import pytest


@pytest.fixture
def server() -> None:
    pytest.fail("tests/unit starts no server: a test that needs one belongs in tests/e2e")


@pytest.fixture
def database_url() -> None:
    pytest.fail("tests/unit opens no database: a test that needs one belongs in tests/contract")
