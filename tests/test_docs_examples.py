"""The examples of the README and the docs that Sphinx's doctest cannot run, run as users do.

The docs' ``{testcode}`` blocks run in ``nox -s docs``. The rest run here: the README's
programs against a simulator on a loopback port, the pytest examples of
``docs/simulator.md`` and the FastAPI recipe's tests in a pytest of their own, and the
daemon recipe as a process that gets SIGTERM.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
from support import environment, python_command, run_pytest_as_user

from wmspanel_async import Target
from wmspanel_async.testing import Account, Fault, Simulator, serve

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
TIMEOUT = 30

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

_FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> Iterator[tuple[str, str]]:
    """Yield each ```python block of a Markdown file, with the heading it stands under."""
    text = path.read_text(encoding="utf-8")
    for match in _FENCE.finditer(text):
        headings = re.findall(r"^#+ (.+)$", text[: match.start()], re.MULTILINE)
        yield (headings[-1] if headings else ""), match.group(1)


def block_under(path: Path, heading: str) -> str:
    """Return the first ```python block under ``heading``."""
    return next(code for under, code in python_blocks(path) if under == heading)


@asynccontextmanager
async def served(account: Account) -> AsyncIterator[dict[str, str]]:
    """Serve ``account`` on a loopback port; yield the environment that points at it."""
    async with serve(Simulator([account])) as server:
        yield environment(
            WMSPANEL_BASE_URL=server.url,
            WMSPANEL_CLIENT_ID=account.client_id,
            WMSPANEL_API_KEY=account.api_key,
        )


async def read_lines(stream: anyio.abc.ByteReceiveStream, count: int) -> list[str]:
    """Read ``count`` lines from ``stream``."""
    buffer = b""
    while buffer.count(b"\n") < count:
        buffer += await stream.receive()
    return buffer.decode().splitlines()[:count]


# The README ------------------------------------------------------------------------------


def script(tmp_path: Path, heading: str) -> str:
    """Write the README's program under ``heading`` to a file; return its path."""
    path = tmp_path / "example.py"
    path.write_text(block_under(ROOT / "README.md", heading), encoding="utf-8")
    return str(path)


@pytest.mark.anyio
async def test_readme_use_it_runs_as_written(tmp_path: Path) -> None:
    """The README's first program runs with the ids it shows (the sample account's)."""
    command = [*python_command(measured=False), script(tmp_path, "Use it")]
    async with served(Account.sample()) as env:
        with anyio.fail_after(TIMEOUT):
            done = await anyio.run_process(command, env=env, check=False)
    assert (done.returncode, done.stderr.decode()) == (0, "")
    assert done.stdout.decode().splitlines() == [
        "Full data slice: 1 viewers, 267784 bit/s",
        "DS2: 1 viewers, 267784 bit/s",
        "that stream on that server: 1",
    ]


@pytest.mark.anyio
async def test_readme_poll_many_targets_polls(tmp_path: Path) -> None:
    """The README's polling program names its targets' slices as it prints their figures."""
    command = [*python_command(measured=False), script(tmp_path, "Poll many targets")]
    async with served(Account.sample()) as env:
        process = await anyio.open_process(command, env=env)
        async with process:
            assert process.stdout is not None
            with anyio.fail_after(TIMEOUT):
                first = await read_lines(process.stdout, 1)
            process.terminate()  # it polls until stopped
    assert first == ["Full data slice: 1"]  # the first target is due at once


# docs/simulator.md's pytest examples, and the FastAPI recipe's tests ----------------------


def test_simulator_page_pytest_examples_pass(pytester: pytest.Pytester) -> None:
    """The test modules and conftest.py of docs/simulator.md pass as shown, on trio's clock."""
    files = {}
    for _, code in python_blocks(DOCS / "simulator.md"):
        first_line = code.splitlines()[0]
        if re.fullmatch(r"# \w+\.py", first_line):
            files[first_line[2:-3]] = code
    assert set(files) == {"test_dashboard", "conftest", "test_polling"}
    pytester.makepyfile(**files)
    result = run_pytest_as_user(pytester, measured=False)
    result.assert_outcomes(passed=3)


def test_fastapi_recipe_tests_pass(pytester: pytest.Pytester) -> None:
    """The FastAPI recipe's app passes its own tests, on asyncio and on trio."""
    pytest.importorskip("fastapi")
    for name in ("fastapi_app.py", "fastapi_page.html", "test_fastapi_app.py"):
        (pytester.path / name).write_text((EXAMPLES / name).read_text(encoding="utf-8"))
    result = run_pytest_as_user(pytester, measured=False)
    result.assert_outcomes(passed=26)


# The daemon recipe -------------------------------------------------------------------------


def daemon_command(*args: str) -> list[str]:
    return [*python_command(measured=False), str(EXAMPLES / "daemon.py"), *args]


@pytest.mark.anyio
async def test_daemon_logs_figures_and_health_then_stops_on_sigterm(tmp_path: Path) -> None:
    """The daemon logs each slice and its health, keeps its quota file, and exits 0 on TERM."""
    account = Account.generate(0, daily_limit=10_000_000)
    quota_file = tmp_path / "quota.json"
    args = ("--interval", "0.4", "--health-every", "0.5", "--daily-limit", "10000000")
    async with served(account) as env:
        process = await anyio.open_process(
            daemon_command(*args, "--quota-file", str(quota_file)), env=env
        )
        async with process:
            assert process.stderr is not None
            log = ""
            with anyio.fail_after(TIMEOUT):
                while "health:" not in log or any(f"{s.name}:" not in log for s in account.slices):
                    log += (await process.stderr.receive()).decode()
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(TIMEOUT):
                async for chunk in process.stderr:
                    log += chunk.decode()
                code = await process.wait()
    assert code == 0, log
    assert "INFO wmspanel_daemon: polling 4 data slices every 0.4 s" in log
    assert re.search(r"INFO wmspanel_daemon: Sports: \d+ connected, \d+ bit/s", log)
    assert "health: 4 slices, 0 down" in log
    assert "SIGTERM received, stopping" in log
    assert log.rstrip().endswith("INFO wmspanel_daemon: stopped")
    assert "HTTP Request" not in log  # no line per request at INFO
    assert account.api_key not in log
    (counts,) = json.loads(quota_file.read_text())["days"].values()
    assert counts[account.client_id] >= 5  # the listing and a round of polls


@pytest.mark.anyio
async def test_daemon_logs_the_package_lines_down_and_recovered(tmp_path: Path) -> None:
    """basicConfig shows the package's WARNING "is down" and INFO "recovered", formatted."""
    account = Account.generate(0, daily_limit=10_000_000)
    simulator = Simulator([account])
    sports = Target(account.slices[1].id)
    simulator.inject(Fault.http_status(503, retry_after=0), times=3, target=sports)
    args = ("--interval", "0.3", "--health-every", "60", "--daily-limit", "10000000")
    async with serve(simulator) as server:
        env = environment(
            WMSPANEL_BASE_URL=server.url,
            WMSPANEL_CLIENT_ID=account.client_id,
            WMSPANEL_API_KEY=account.api_key,
        )
        process = await anyio.open_process(daemon_command(*args), env=env)
        async with process:
            assert process.stderr is not None
            log = ""
            with anyio.fail_after(TIMEOUT):
                while "recovered after" not in log:
                    log += (await process.stderr.receive()).decode()
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(TIMEOUT):
                async for chunk in process.stderr:
                    log += chunk.decode()
                assert await process.wait() == 0, log
    stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    down = rf"{stamp} WARNING wmspanel_async\.poller: {sports} is down: ServerError: "
    recovered = rf"{stamp} INFO wmspanel_async\.poller: {sports} recovered after \d+ failed"
    assert re.search(down, log, flags=re.MULTILINE), log
    assert re.search(recovered, log, flags=re.MULTILINE), log
    assert account.api_key not in log


@pytest.mark.anyio
async def test_daemon_exits_3_when_the_credentials_are_refused() -> None:
    """A refused key is logged once and ends the daemon with 3: restarting cannot help."""
    async with served(Account.generate(0)) as env:
        env["WMSPANEL_API_KEY"] = "wrong"
        with anyio.fail_after(TIMEOUT):
            done = await anyio.run_process(daemon_command(), env=env, check=False)
    log = done.stderr.decode()
    assert done.returncode == 3, log
    assert "CRITICAL wmspanel_daemon: the API refused the credentials" in log
    assert "either client_id or api_key is wrong" in log


def test_daemon_exits_2_without_credentials() -> None:
    """Missing settings end the daemon with 2 and the client's message."""
    done = subprocess.run(  # noqa: S603 - our own example
        daemon_command(),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 2
    assert "CRITICAL wmspanel_daemon: no client id" in done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_the_exporters_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The shipped unit has no key systemd does not know, and a state directory for --ledger."""
    unit = (EXAMPLES / "wmspanel-exporter.service").read_text()
    assert "StateDirectory=wmspanel-exporter" in unit
    assert "--ledger %S/wmspanel-exporter/" in unit
    assert "install -D -m 600 /dev/stdin /etc/wmspanel/api-key" in unit
    # The command is where the unit's comment installs it; verify wants one that exists.
    checked = tmp_path / "wmspanel-exporter.service"
    checked.write_text(unit.replace("/opt/wmspanel-exporter/bin/wmspanel-async", "/bin/true"))
    result = subprocess.run(  # noqa: S603 - systemd's own checker on our file
        ["systemd-analyze", "verify", "--man=no", str(checked)],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_readme_install_list_names_every_extra() -> None:
    """Each extra of pyproject.toml has its line in the README's install list."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = re.findall(r"^([a-z0-9-]+) = \[", section, flags=re.MULTILINE)
    assert {"cli", "testing", "aiohttp", "redis", "prometheus"} <= set(extras)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    for extra in extras:
        assert f'pip install -e ".[{extra}]"' in install, extra
