"""What the benchmarks share: the loopback nginx, the credentials it is called with, the package.

The nginx (../shared/bench/nginx-loopback.sh) serves the API's sample answers on 127.0.0.1,
whatever the query: any client id, key and data slice do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

NGINX = Path(__file__).resolve().parent.parent.parent / "shared" / "bench" / "nginx-loopback.sh"
CLIENT_ID = "00000000-1111-2222-3333-444444444444"
API_KEY = "0123456789abcdef0123456789abcdef"


@contextlib.contextmanager
def nginx() -> Iterator[int]:
    """Run nginx on a free loopback port; yield the port, then stop it and remove its folder."""
    port_text, pid_file = subprocess.run(
        ["bash", str(NGINX)], capture_output=True, text=True, check=True, timeout=300
    ).stdout.split()
    pid = int(Path(pid_file).read_text().strip())
    try:
        yield int(port_text)
    finally:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        shutil.rmtree(Path(pid_file).parent, ignore_errors=True)


def describe_package() -> str:
    """Say which wmspanel_async the children import, and the state of its git tree."""
    import wmspanel_async  # noqa: PLC0415

    where = Path(wmspanel_async.__file__).resolve().parent.parent
    state = subprocess.run(
        ["git", "-C", str(where), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"wmspanel_async from {where} ({state or 'not a git tree'})"
