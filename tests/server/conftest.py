"""Fixtures shared by the server tests (helpers: ``tests/server_helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.server_helpers import Server


@pytest.fixture
def guarded(tmp_path: Path, suite_path: Path):
    """A server with tokens that refuses an address after 3 failed logins or bearer tokens
    within 3 s."""
    s = Server(tmp_path, "--store", f"sqlite:///{tmp_path / 'wk.db'}", "--suite",
               f"m={suite_path}", "--login-failures", "3", "--login-window", "3s")
    s.start()
    yield s
    s.stop()
