"""The ``wmspanel-async`` command line (installed with the ``cli`` extra).

Run ``wmspanel-async --help``, or ``wmspanel-async demo`` to see a live view of a simulated
account with nothing to configure; ``docs/cli.md`` describes every command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``wmspanel-async`` command and return its exit code.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` by default.
    """
    try:
        from ._app import main as run  # noqa: PLC0415 - rich may be missing: say so
    except ImportError as exc:
        sys.stderr.write(
            f"wmspanel-async: error: the command line needs the cli extra ({exc}): "
            "pip install 'wmspanel-async[cli]'\n"
        )
        return 2
    return run(argv)
