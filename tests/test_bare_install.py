"""Without the cli extra, the command says which extra it needs instead of a traceback."""

from __future__ import annotations

import subprocess

import pytest
from support import CLI_EXTRA, python_command

pytestmark = pytest.mark.skipif(CLI_EXTRA, reason="only the bare install lacks the cli extra")


def test_command_without_the_cli_extra_names_it() -> None:
    """`wmspanel-async` without rich exits 2 with one line saying what to install."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [*python_command(), "-m", "wmspanel_async.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("wmspanel-async: error: the command line needs the cli extra")
    assert "pip install 'wmspanel-async[cli]'" in result.stderr
    assert len(result.stderr.splitlines()) == 1
