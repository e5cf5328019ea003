"""``wmspanel-async exporter``, run as a subprocess: it serves, stops cleanly, and says why not.

The exporter serves the demo account in process, or a simulator that this test serves on
loopback; its settings come from the command line, a TOML file and the environment.
"""

from __future__ import annotations

import datetime as dt
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest
from redis_support import RedisServer
from support import CLI_EXTRA, environment, python_command, python_script

from wmspanel_async import Target
from wmspanel_async.cli import main
from wmspanel_async.testing import Simulator, serve

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
    pytest.mark.skipif(not CLI_EXTRA, reason="the command line is what the cli extra adds"),
]

TIMEOUT = 30.0
#: Seconds a scrape may take to show what a test waits for; the exporter polls every second.
DEADLINE = 20.0


def command(*args: str) -> list[str]:
    return [*python_command(), "-m", "wmspanel_async.cli", "exporter", *args]


@pytest.fixture
def demo() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``exporter --demo`` on a free port, and the URL it announced."""
    process = subprocess.Popen(  # noqa: S603 - our own command
        command("--demo", "--listen", "127.0.0.1:0"),  # every 1 s: the demo's calls last
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
        assert ready, "the exporter announced no address in time"
        line = process.stdout.readline()
        assert line.startswith("wmspanel-async exporter: serving http://127.0.0.1:")
        yield process, line.split()[-1].removesuffix("/metrics")
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=TIMEOUT)


def metrics_until(url: str, fragment: str) -> str:
    """GET /metrics until it holds ``fragment``, for DEADLINE seconds at most."""
    deadline = time.monotonic() + DEADLINE
    while True:
        text = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
        if fragment in text:
            return text
        assert time.monotonic() < deadline, f"no {fragment!r} in time:\n{text}"
        time.sleep(0.1)  # bounded polling: the next poll of the exporter comes within 1 s


def test_demo_serves_metrics_page_and_health_then_stops_on_sigterm_within_a_second(
    demo: tuple[subprocess.Popen[str], str],
) -> None:
    """/metrics has the demo's figures, / and /healthz answer; SIGTERM ends it with 0."""
    process, url = demo
    text = metrics_until(url, 'wmspanel_data_slice_info{data_slice="')
    text = metrics_until(url, "wmspanel_connected{")
    assert 'name="All streams"} 1' in text
    assert 'wmspanel_poll_errors_total{error="ServerError"} 0.0\n' in text  # none yet
    page, health = httpx.get(f"{url}/", timeout=TIMEOUT), httpx.get(f"{url}/healthz")
    assert page.status_code == 200
    assert "WMSPanel exporter" in page.text
    assert (health.status_code, health.text) == (200, "ok: polling\n")

    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=TIMEOUT)
    assert time.monotonic() - sent < 1.0
    assert code == 0
    assert process.stderr is not None
    assert process.stderr.read() == ""


def test_sighup_is_a_clean_stop_with_exit_code_0(
    demo: tuple[subprocess.Popen[str], str],
) -> None:
    """SIGHUP stops the exporter as SIGTERM does (exit 0, nothing on stderr); no reload."""
    process, url = demo
    metrics_until(url, "wmspanel_connected{")
    sent = time.monotonic()
    process.send_signal(signal.SIGHUP)
    code = process.wait(timeout=TIMEOUT)
    assert time.monotonic() - sent < 1.0
    assert code == 0  # not -SIGHUP: the default action would have killed it
    assert process.stderr is not None
    assert process.stderr.read() == ""


@pytest.mark.anyio
async def test_a_refused_key_keeps_serving_with_up_0_and_says_once_what_to_fix(
    anyio_backend_name: str,
) -> None:
    """403: every target is up 0 with the error counted; the log names the fix; no key."""
    simulator = Simulator()
    account = simulator.account
    wrong_key = "f" * 32
    whole = account.slices[0].id
    async with serve(simulator) as server:
        env = environment(
            WMSPANEL_CLIENT_ID=account.client_id,
            WMSPANEL_API_KEY=wrong_key,
            WMSPANEL_BASE_URL=server.url,
        )
        args = ("--slice", whole, "--each-server", "--listen", "127.0.0.1:0", "--interval", "0.2")
        async with await anyio.open_process(
            command(*args, "--backend", anyio_backend_name), env=env
        ) as process:
            url = await announced_url(process)
            up = f'wmspanel_up{{data_slice="{whole}",server="",stream=""}} 0'
            async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
                text = await metrics_until_async(http, up)
                health = await http.get("/healthz")
                page = await http.get("/")
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(TIMEOUT):
                code = await process.wait()
            assert process.stderr is not None
            err = (await read_all(process.stderr)).decode()
    assert code == 0
    assert 'wmspanel_poll_errors_total{error="AuthenticationError"} 0.0\n' not in text
    assert 'wmspanel_poll_errors_total{error="AuthenticationError"} ' in text
    assert "wmspanel_connected{" not in text
    assert health.status_code == 200  # polling runs; restarting would not fix the key
    lines = err.splitlines()
    refused = [line for line in lines if "refused the credentials" in line]
    assert len(refused) == 2, err  # the slice's listing, once; its one target, once
    assert all("whitelist" in line for line in refused)
    assert all(line.startswith("wmspanel-async exporter: warning: ") for line in lines), err
    for output in (text, page.text, err):
        assert wrong_key not in output


async def announced_url(process: anyio.abc.Process) -> str:
    assert process.stdout is not None
    received = b""
    with anyio.fail_after(TIMEOUT):
        while b"\n" not in received:
            received += await process.stdout.receive()
    line = received.decode().splitlines()[0]
    assert line.startswith("wmspanel-async exporter: serving http://127.0.0.1:"), line
    return line.split()[-1].removesuffix("/metrics")


async def metrics_until_async(http: httpx.AsyncClient, fragment: str) -> str:
    with anyio.fail_after(DEADLINE):
        while True:
            text = (await http.get("/metrics")).text
            if fragment in text:
                return text
            await anyio.sleep(0.1)  # the next poll comes within 0.2 s


async def read_all(stream: anyio.abc.ByteReceiveStream) -> bytes:
    data = b""
    try:
        while True:
            data += await stream.receive()
    except anyio.EndOfStream:
        return data


# -- settings that cannot work: one line and exit code 2 -----------------------------------


def test_bad_settings_exit_2_with_one_line() -> None:
    """Run as a command, nothing to export is one line on stderr and exit code 2."""
    completed = subprocess.run(  # noqa: S603 - our own command
        command(), capture_output=True, text=True, env=environment(), timeout=TIMEOUT, check=False
    )
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr == (
        "wmspanel-async: error: nothing to export: give --slice ID, --all-slices, "
        "--config FILE or --demo\n"
    )


SLICE = "5e4a11907c7d4ef12200000c"


@pytest.mark.parametrize(
    ("args", "config", "fragment"),
    [
        (["--slice", "Sports"], None, "a data slice id is 24 lowercase hex digits, got 'Sports'"),
        (["--slice", SLICE, "--listen", "10054"], None, "expected HOST:PORT"),
        (["--slice", SLICE, "--listen", "[::1:5"], None, "expected HOST:PORT"),
        (["--slice", SLICE, "--listen", "::1:5"], None, "expected HOST:PORT"),
        (["--slice", SLICE, "--listen", "[example]:5"], None, "expected HOST:PORT"),
        (["--slice", SLICE, "--interval", "0"], None, "expected a positive number of seconds"),
        (["--demo", "--stream", "live"], None, "a stream id is 24 lowercase hex digits"),
        ([], "interval = 30\nslice = 'x'\n", "has unknown settings ['slice']"),
        ([], "interval = 'fast'\n", "interval = 'fast' is not a positive number of seconds"),
        ([], "all_slices = 1\n", "all_slices = 1 is not true or false"),
        ([], "listen = '127.0.0.1'\n", "listen: expected HOST:PORT"),
        ([], "[[targets]]\nstream = 'x'\n", "each [[targets]] table has data_slice"),
        ([], f"[[targets]]\ndata_slice = '{SLICE}'\nserver = 'edge'\n", "server takes an id"),
        ([], "interval = [", "is not valid TOML"),
        ([], "", "nothing to export"),
        (["--slice", SLICE], None, "no client id: set WMSPANEL_CLIENT_ID"),
    ],
)
def test_settings_that_cannot_work_are_one_usage_error(
    args: list[str],
    config: str | None,
    fragment: str,
    *,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bad options, a bad TOML file and missing credentials: exit code 2, one line."""
    for name in ("WMSPANEL_CLIENT_ID", "WMSPANEL_API_KEY", "WMSPANEL_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    if config is not None:
        path = tmp_path / "exporter.toml"
        path.write_text(config)
        args = [*args, "--config", str(path)]
    try:
        code = main(["exporter", *args])
    except SystemExit as exit_:  # argparse's own checks
        code = exit_.code
    assert code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("wmspanel-async: error: ")
    assert fragment in err


def test_a_config_file_gives_the_targets_and_flags_win(tmp_path: Path) -> None:
    """The TOML settings are read; a flag given too takes their place."""
    from wmspanel_async.cli._app import build_parser
    from wmspanel_async.cli._exporter import _plan

    path = tmp_path / "exporter.toml"
    path.write_text(
        "interval = 45\n"
        "listen = '[::1]:9999'\n"
        f"slices = ['{SLICE}']\n"
        "each_server = true\n"
        f"[[targets]]\ndata_slice = '{SLICE[:-1]}d'\nstream = '{SLICE[:-1]}1'\n"
    )
    args = build_parser().parse_args(["exporter", "--config", str(path), "--interval", "60"])
    plan = _plan(args)
    assert (plan.interval, plan.host, plan.port, plan.each_server) == (60, "::1", 9999, True)
    assert [str(target) for target in plan.explicit()] == [
        f"data_slice={SLICE[:-1]}d stream={SLICE[:-1]}1",
        f"data_slice={SLICE}",
    ]


@pytest.mark.anyio
async def test_listed_slices_give_names_and_the_servers_of_each_server() -> None:
    """--slice with --each-server: the slice's servers are watched, every name is known."""
    from wmspanel_async.cli._app import build_parser
    from wmspanel_async.cli._exporter import _follow_slices, _plan

    simulator = Simulator()
    account = simulator.account
    whole = account.slices[0]
    args = build_parser().parse_args(["exporter", "--slice", whole.id, "--each-server"])
    plan = _plan(args)
    names: dict[str, str] = {}
    async with (
        simulator.client() as client,
        client.keep_fresh(plan.explicit(), interval=3600) as fresh,
        anyio.create_task_group() as task_group,
    ):
        task_group.start_soon(_follow_slices, client, fresh, plan, names)
        await anyio.wait_all_tasks_blocked()  # listed, and asleep for an hour
        watched = set(fresh.targets)
        task_group.cancel_scope.cancel()
    assert names == {data_slice.id: data_slice.name for data_slice in account.slices}
    assert watched == {Target(whole.id)} | {
        Target(whole.id, server=server) for server in whole.servers
    }


def test_a_port_in_use_exits_4(demo: tuple[subprocess.Popen[str], str]) -> None:
    """Listening where something listens already is one line and exit code 4."""
    _, url = demo
    port = url.rsplit(":", 1)[1]
    completed = subprocess.run(  # noqa: S603 - our own command
        command("--demo", "--listen", f"127.0.0.1:{port}"),
        capture_output=True,
        text=True,
        env=environment(),
        timeout=TIMEOUT,
        check=False,
    )
    assert completed.returncode == 4
    assert completed.stderr.startswith(
        f"wmspanel-async: error: cannot listen on 127.0.0.1:{port}: "
    )
    assert len(completed.stderr.splitlines()) == 1


def test_without_the_prometheus_extra_the_exporter_names_it(tmp_path: Path) -> None:
    """No prometheus_client: the module and the command say which extra to install."""
    source = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None  # as if the extra were not installed\n"
        "try:\n"
        "    import wmspanel_async.prometheus\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "from wmspanel_async.cli import main\n"
        "sys.exit(main(['exporter', '--demo']))\n"
    )
    completed = subprocess.run(  # noqa: S603 - our own script
        python_script(tmp_path, source),
        capture_output=True,
        text=True,
        env=environment(),
        timeout=TIMEOUT,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stdout.startswith("wmspanel_async.prometheus needs the prometheus extra")
    assert "pip install 'wmspanel-async[prometheus]'" in completed.stdout
    assert len(completed.stderr.splitlines()) == 1
    assert completed.stderr.startswith("wmspanel-async: error: the exporter needs the prometheus")
    # Said once: not the module's message quoted inside the command's.
    assert completed.stderr.count("prometheus extra") == 1
    assert completed.stderr.count("pip install") == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_two_exporters_with_a_share_poll_once(redis_server: RedisServer) -> None:
    """--share and --ledger: two exporters serve the same slice; the API sees one poller."""
    simulator = Simulator()
    account = simulator.account
    whole = account.slices[0].id
    async with serve(simulator) as server:
        env = environment(
            WMSPANEL_CLIENT_ID=account.client_id,
            WMSPANEL_API_KEY=account.api_key,
            WMSPANEL_BASE_URL=server.url,
            WMSPANEL_SHARE_URL=redis_server.url,
        )
        args = ("--slice", whole, "--listen", "127.0.0.1:0", "--interval", "0.5")
        args += ("--daily-limit", "1000000", "--ledger", redis_server.url)
        fragment = f'wmspanel_connected{{data_slice="{whole}",server="",stream=""}} '
        async with (
            await anyio.open_process(command(*args), env=env) as first,
            await anyio.open_process(command(*args), env=env) as second,
        ):
            urls = [await announced_url(first), await announced_url(second)]
            for url in urls:
                async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
                    await metrics_until_async(http, fragment)
            started = simulator.now()

            def polls() -> list[dt.datetime]:
                return [
                    r.at
                    for r in simulator.requests
                    if r.at > started and r.path.endswith("realtime_data")
                ]

            with anyio.fail_after(TIMEOUT):
                while len(polls()) < 7:  # noqa: ASYNC110 - bounded polling of the API's log
                    await anyio.sleep(0.05)
            steady = polls()[:7]
            for process in (first, second):
                process.send_signal(signal.SIGTERM)
                with anyio.fail_after(TIMEOUT):
                    assert await process.wait() == 0
    # One poller's schedule, not two: seven polls took six intervals of 0.5 s (less a
    # first one that ran late).
    assert (steady[-1] - steady[0]).total_seconds() >= 5.5 * 0.5


def test_a_restarted_exporter_has_every_target_at_once_and_stops_after_its_duration() -> None:
    """At an interval of 60 s, every target is polled at start; --duration ends it with 0."""
    process = subprocess.Popen(  # noqa: S603 - our own command
        command("--demo", "--interval", "60", "--duration", "6", "--listen", "127.0.0.1:0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
        assert ready, "the exporter announced no address in time"
        started = time.monotonic()
        url = process.stdout.readline().split()[-1].removesuffix("/metrics")
        while True:  # bounded polling: 4 s at most, far below the 60 s interval
            text = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
            up = [line for line in text.splitlines() if line.startswith("wmspanel_up{")]
            if len(up) == 7:  # the demo's 4 slices and 3 streams
                break
            assert time.monotonic() - started < 4, f"{len(up)} of 7 targets polled:\n{text}"
            time.sleep(0.05)
        code = process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=TIMEOUT)
    assert code == 0
