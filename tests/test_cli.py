"""The ``wmspanel-async`` command, run as a subprocess: output, exit codes, and no key anywhere."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from redis_support import RedisServer, free_port
from rich.console import Console
from support import environment, python_command

from wmspanel_async import (
    GeoEntry,
    PollerStats,
    QuotaStatus,
    RealtimeStats,
    ServerError,
    Snapshot,
    Target,
    WMSPanelError,
)
from wmspanel_async.cli import main
from wmspanel_async.cli._app import _fail, _unwrap, build_parser
from wmspanel_async.cli._view import WatchView, human_bandwidth, plain_line, sparkline
from wmspanel_async.cli._watch import _demo

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and ptys")

TIMEOUT = 30


def command() -> list[str]:
    """The command line that runs ``wmspanel-async`` (as ``python -m wmspanel_async.cli``)."""
    return [*python_command(), "-m", "wmspanel_async.cli"]


class Result:
    """A finished run: exit code, stdout lines, stderr."""

    def __init__(self, completed: subprocess.CompletedProcess[str]) -> None:
        self.code = completed.returncode
        self.out = completed.stdout
        self.err = completed.stderr

    @property
    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]

    def assert_one_line_error(self, code: int, *fragments: str) -> None:
        assert self.code == code, (self.code, self.out, self.err)
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith("wmspanel-async: error: ")
        assert "Traceback" not in self.err
        for fragment in fragments:
            assert fragment in lines[0]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    completed = subprocess.run(  # noqa: S603 - our own command
        [*command(), *args],
        capture_output=True,
        text=True,
        env=env if env is not None else environment(),
        timeout=TIMEOUT,
        check=False,
    )
    return Result(completed)


class Simulated:
    """A ``wmspanel-async simulator`` subprocess and what it announced."""

    def __init__(self, process: subprocess.Popen[str], announcement: dict[str, Any]) -> None:
        self.process = process
        self.base_url: str = announcement["base_url"]
        self.client_id: str = announcement["client_id"]
        self.api_key: str = announcement["api_key"]
        self.slices: list[dict[str, Any]] = announcement["data_slices"]
        self.streams: list[dict[str, Any]] = announcement["streams"]
        self.servers: list[dict[str, Any]] = announcement["servers"]

    def env(self, **variables: str) -> dict[str, str]:
        settings = {
            "WMSPANEL_BASE_URL": self.base_url,
            "WMSPANEL_CLIENT_ID": self.client_id,
            "WMSPANEL_API_KEY": self.api_key,
        }
        return environment(**{**settings, **variables})

    def run(self, *args: str, **variables: str) -> Result:
        """Run a command against this simulator; its key must appear in no output."""
        result = run(*args, env=self.env(**variables))
        assert self.api_key not in result.out
        assert self.api_key not in result.err
        return result


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own command
        [*command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )


def read_line(process: subprocess.Popen[str], timeout: float = TIMEOUT) -> str:
    """Read one line of the process's stdout, waiting at most ``timeout`` seconds."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "no output in time"
    return process.stdout.readline()


def stop(process: subprocess.Popen[str], sig: signal.Signals = signal.SIGINT) -> tuple[int, str]:
    """Send ``sig`` and return the exit code and stderr."""
    process.send_signal(sig)
    _, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, err


@pytest.fixture(scope="module")
def simulated() -> Iterator[Simulated]:
    """One simulator subprocess on a free port, for the tests of this module."""
    process = start("simulator", "--port", "0", "--json", "--seed", "3", "--daily-limit", "999999")
    try:
        yield Simulated(process, json.loads(read_line(process)))
    finally:
        code, err = stop(process)
        assert (code, err) == (0, "")


# Commands against the simulator ---------------------------------------------------------


def test_slices_json(simulated: Simulated) -> None:
    """slices --json prints one object per slice, with id and name."""
    result = simulated.run("slices", "--json")
    assert (result.code, result.err) == (0, "")
    assert result.json_lines == [{"id": s["id"], "name": s["name"]} for s in simulated.slices]


def test_slices_table(simulated: Simulated) -> None:
    """slices prints a table of ids and names."""
    result = simulated.run("slices")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == f"{'ID':<24}  Name"
    assert lines[1] == f"{simulated.slices[0]['id']}  All streams"


def test_realtime_by_name_stream_and_server_json(simulated: Simulated) -> None:
    """realtime takes a slice name, --stream and --server, and prints one snapshot object."""
    first = simulated.run("realtime", "All streams", "--json").json_lines[0]
    assert first["name"] == "All streams"
    whole = simulated.slices[0]["id"]
    assert first["target"] == {"data_slice": whole, "stream": None, "server": None}
    assert first["error"] is None
    stats = first["stats"]
    assert stats["connected"] > 0
    assert len(stats["geo"]) == 20
    assert set(stats["geo"][0]) == {"country", "connected"}
    stream, server = simulated.streams[0]["id"], simulated.servers[1]["id"]
    narrow = simulated.run("realtime", whole, "--stream", stream, "--server", server, "--json")
    (snapshot,) = narrow.json_lines
    assert snapshot["target"] == {"data_slice": whole, "stream": stream, "server": server}
    assert 0 < snapshot["stats"]["connected"] < stats["connected"]


def test_realtime_human_output(simulated: Simulated) -> None:
    """realtime prints connected, bandwidth in human units and the countries."""
    result = simulated.run("realtime", simulated.slices[2]["id"])
    assert result.code == 0
    label, connected, bandwidth, countries = result.out.splitlines()
    assert label == simulated.slices[2]["id"]  # given by id: no name is looked up
    assert re.fullmatch(r"connected  [\d,]+", connected)
    assert re.fullmatch(r"bandwidth  [\d.]+ [kMG]bit/s", bandwidth)
    assert re.fullmatch(r"countries  ([A-Z]{2} [\d,]+, ){19}[A-Z]{2} [\d,]+", countries)


def test_lite_slice_stream_is_an_api_error(simulated: Simulated) -> None:
    """Asking a lite slice for a stream exits 5 with the API's complaint on one line."""
    lite = next(s for s in simulated.slices if s["lite"])
    result = simulated.run("realtime", lite["id"], "--stream", "0" * 24)
    result.assert_one_line_error(5, "status 'Error'")


def test_watch_json_until_duration(simulated: Simulated) -> None:
    """watch --json prints one snapshot per line, then stops by itself after --duration."""
    started = time.monotonic()
    result = simulated.run(
        "watch",
        "Sports",
        "Europe edge",
        "--interval",
        "0.5",
        "--duration",
        "2",
        "--daily-limit",
        "999999",
    )
    elapsed = time.monotonic() - started
    assert (result.code, result.err) == (0, "")
    assert 2 <= elapsed < 10
    lines = result.out.splitlines()
    assert len(lines) >= 4
    assert {line.split(": ", 1)[0].split(" ", 1)[1] for line in lines} == {"Sports", "Europe edge"}


def test_watch_stops_cleanly_on_ctrl_c(simulated: Simulated) -> None:
    """Ctrl-C (SIGINT) or SIGTERM stops watch with exit code 0 and nothing on stderr."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        process = subprocess.Popen(  # noqa: S603 - our own command
            [*command(), "watch", "--json", "--interval", "1", "--daily-limit", "999999"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=simulated.env(),
        )
        snapshot = json.loads(read_line(process))
        assert snapshot["stats"]["connected"] > 0
        code, err = stop(process, sig)
        assert (code, err) == (0, "")


def test_watch_warns_when_the_schedule_must_stretch(simulated: Simulated) -> None:
    """Polling faster than the daily calls allow is slowed down, with one warning on stderr."""
    # 20 calls a day: polling every 0.1 s would not last the day's last 2 s, whatever the
    # hour (with the default 15,000 it fitted after 23:36 UTC, and there was no warning).
    result = simulated.run(
        "watch", "Sports", "--json", "--interval", "0.1", "--duration", "1", "--daily-limit", "20"
    )
    assert result.code == 0
    assert result.err.startswith("wmspanel-async: warning: polling 1 targets every 0.1 s")
    assert "18 are left after keeping 1 in reserve" in result.err
    assert len(result.err.splitlines()) == 1
    # Every s/18 s for the s seconds left today (over 1 s until 23:59:42 UTC) instead; a
    # loaded machine can only print fewer lines, never more.
    assert len(result.json_lines) <= 1


def test_key_file_and_key_flag(simulated: Simulated, tmp_path: Path) -> None:
    """--api-key-file reads the key; --api-key works but warns; neither shows the key."""
    key_file = tmp_path / "key"
    key_file.write_text(simulated.api_key + "\n")
    env = {"WMSPANEL_API_KEY": ""}
    from_file = simulated.run("slices", "--json", "--api-key-file", str(key_file), **env)
    assert (from_file.code, from_file.err) == (0, "")
    flag = simulated.run("slices", "--json", "--api-key", simulated.api_key, **env)
    assert flag.code == 0
    assert flag.err.startswith("wmspanel-async: warning: --api-key puts the key where other users")
    assert flag.json_lines == from_file.json_lines


def test_wrong_key_exits_3(simulated: Simulated) -> None:
    """A key the API refuses exits 3 with one line naming both possible causes."""
    result = simulated.run("slices", WMSPANEL_API_KEY="f" * 32)
    result.assert_one_line_error(3, "403", "whitelist")
    assert "f" * 32 not in result.err


def test_unknown_slice_exits_2(simulated: Simulated) -> None:
    """A slice name the key does not see exits 2 and lists the slices it does see."""
    result = simulated.run("watch", "Nope", "--duration", "5")
    result.assert_one_line_error(2, "no data slice 'Nope'", "'Sports'")


def test_key_given_as_a_slice_is_blanked_in_the_error_line(simulated: Simulated) -> None:
    """The command blanks its key in its own error line, which the client never redacted."""
    result = simulated.run("realtime", simulated.api_key)  # pasted where the slice goes
    result.assert_one_line_error(2, "no data slice '<redacted>' for this key")


def test_trio_backend(simulated: Simulated) -> None:
    """--backend trio runs the same commands on trio, given before or after the command."""
    before = simulated.run("--backend", "trio", "slices", "--json")
    after = simulated.run("slices", "--json", "--backend", "trio")
    assert (before.code, len(before.json_lines)) == (0, 4)
    assert (after.code, after.json_lines) == (0, before.json_lines)


def test_aiohttp_transport(simulated: Simulated) -> None:
    """--transport aiohttp gives the same answers; on trio it is one usage error line."""
    default = simulated.run("slices", "--json")
    aiohttp = simulated.run("slices", "--json", "--transport", "aiohttp")
    assert (aiohttp.code, aiohttp.json_lines) == (0, default.json_lines)
    whole = simulated.slices[0]["id"]
    realtime = simulated.run("realtime", whole, "--json", "--transport", "aiohttp")
    (snapshot,) = realtime.json_lines
    assert (realtime.code, snapshot["error"]) == (0, None)
    refused = simulated.run("--backend", "trio", "slices", "--transport", "aiohttp")
    refused.assert_one_line_error(2, 'transport="aiohttp" runs on asyncio only, and this is trio')
    parser = build_parser()
    for command in (["slices"], ["realtime", whole], ["watch"]):
        assert parser.parse_args([*command, "--transport", "aiohttp"]).transport == "aiohttp"
        assert parser.parse_args(command).transport == "httpx"


@pytest.mark.parametrize(
    ("argv", "backend"),
    [
        (["demo"], "asyncio"),
        (["--backend", "trio", "demo"], "trio"),
        (["demo", "--backend", "trio"], "trio"),
        (["--backend", "trio", "demo", "--backend", "asyncio"], "asyncio"),
        (["simulator", "--backend", "trio"], "trio"),
        (["watch", "--backend", "trio", "Sports"], "trio"),
    ],
)
def test_backend_is_accepted_before_and_after_the_command(argv: list[str], backend: str) -> None:
    """--backend may come before the command or after it; the one after it wins."""
    assert build_parser().parse_args(argv).backend == backend


def test_watch_adds_rows_for_streams_and_servers(simulated: Simulated) -> None:
    """watch --stream and --server (repeatable) add a row per slice for each of them."""
    whole = simulated.slices[0]
    first, second = simulated.streams[0]["id"], simulated.streams[1]["id"]
    server = simulated.servers[2]["id"]
    result = simulated.run(
        "watch",
        "All streams",
        "--stream",
        first,
        "--stream",
        second,
        "--server",
        server,
        "--json",
        "--interval",
        "0.4",
        "--duration",
        "1.5",
        "--daily-limit",
        "999999",
    )
    assert (result.code, result.err) == (0, "")
    targets = {json.dumps(line["target"], sort_keys=True): line for line in result.json_lines}
    expected = [
        {"data_slice": whole["id"], "stream": None, "server": None},
        {"data_slice": whole["id"], "stream": first, "server": None},
        {"data_slice": whole["id"], "stream": second, "server": None},
        {"data_slice": whole["id"], "stream": None, "server": server},
    ]
    assert sorted(targets) == sorted(json.dumps(target, sort_keys=True) for target in expected)
    names = {line["name"] for line in result.json_lines}
    labels = ["All streams", f"All streams / {first}", f"All streams / {second}"]
    assert names == {*labels, f"All streams @ {server}"}
    assert all(line["error"] is None for line in result.json_lines)


def test_short_wrong_key_reads_plainly(simulated: Simulated) -> None:
    """A made-up key such as `wrong` does not blank the word in the 403 message."""
    result = simulated.run("slices", WMSPANEL_API_KEY="wrong")
    result.assert_one_line_error(3, "either client_id or api_key is wrong, or this machine's IP")
    assert "<redacted>" not in result.err


# Failures without a simulator -----------------------------------------------------------


def test_network_failure_exits_4() -> None:
    """Nothing listening at the base URL exits 4 with one line."""
    env = environment(
        WMSPANEL_CLIENT_ID="id",
        WMSPANEL_API_KEY="0123456789abcdef0123456789abcdef",
        WMSPANEL_BASE_URL="http://127.0.0.1:9",
    )
    result = run("slices", "--timeout", "2", env=env)
    result.assert_one_line_error(4, "ConnectError")
    assert "0123456789abcdef0123456789abcdef" not in result.out + result.err


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["slices"], {}, "no client id: set WMSPANEL_CLIENT_ID"),
        (["slices"], {"WMSPANEL_CLIENT_ID": "x"}, "no API key: set WMSPANEL_API_KEY"),
        (["slices", "--api-key-file", "/nonexistent"], {"WMSPANEL_CLIENT_ID": "x"}, "cannot read"),
        (
            ["slices", "--base-url", "http://api.example"],
            {"WMSPANEL_CLIENT_ID": "x", "WMSPANEL_API_KEY": "y"},
            "is not HTTPS",
        ),
        (["watch", "--interval", "-1"], {}, "expected a positive number"),
        (["demo", "--duration", "soon"], {}, "expected a positive number"),
        (["simulator", "--error-rate", "2"], {}, "expected a number from 0 to 1"),
        (["simulator", "--error-rate", "x"], {}, "expected a number from 0 to 1"),
        (["fly"], {}, "invalid choice: 'fly'"),
        (["simulator", "--host", "0.0.0.0", "--port", "0"], {}, "not a loopback address"),  # noqa: S104
        (["simulator", "--daily-limit", "-1", "--port", "0"], {}, "daily_limit must be 0 or more"),
    ],
    ids=[
        "no-client-id",
        "no-key",
        "key-file",
        "not-https",
        "bad-interval",
        "bad-duration",
        "bad-rate",
        "rate-not-a-number",
        "bad-command",
        "host",
        "limit",
    ],
)
def test_usage_errors_exit_2(args: list[str], env: dict[str, str], fragment: str) -> None:
    """Bad arguments and missing settings exit 2 with one line, never a usage block."""
    run(*args, env=environment(**env)).assert_one_line_error(2, fragment)


def test_empty_key_file_exits_2(tmp_path: Path) -> None:
    """An empty key file is refused."""
    (tmp_path / "key").write_text("\n")
    result = run(
        "slices", "--api-key-file", str(tmp_path / "key"), env=environment(WMSPANEL_CLIENT_ID="x")
    )
    result.assert_one_line_error(2, "is empty")


def test_port_in_use_exits_4(simulated: Simulated) -> None:
    """The simulator cannot take a port already in use: exit 4."""
    port = simulated.base_url.rsplit(":", 1)[1]
    run("simulator", "--port", port).assert_one_line_error(4, f"port {port}")


def test_simulator_daily_limit_exits_5() -> None:
    """Past the simulator's daily limit the API answers 429, and the command exits 5."""
    process = start("simulator", "--port", "0", "--json", "--daily-limit", "1")
    try:
        simulated = Simulated(process, json.loads(read_line(process)))
        assert simulated.run("slices").code == 0
        simulated.run("slices").assert_one_line_error(5, "429")
    finally:
        assert stop(process) == (0, "")


def test_simulator_logs_requests_and_serves_its_stats() -> None:
    """--log-requests logs a line per request on stderr; /_simulator/stats counts the calls."""
    process = start("simulator", "--port", "0", "--json", "--seed", "5", "--log-requests")
    try:
        simulated = Simulated(process, json.loads(read_line(process)))
        assert simulated.run("slices").code == 0
        assert simulated.run("realtime", simulated.slices[0]["id"]).code == 0
        stats = httpx.get(f"{simulated.base_url}/_simulator/stats", timeout=TIMEOUT).json()
    finally:
        code, err = stop(process)
    assert code == 0
    [account] = stats["accounts"]
    assert account["client_id"] == simulated.client_id
    assert account["calls_today"] == 2
    assert {"key": simulated.api_key[:4] + "\u2026", "calls_today": 2} in account["keys"]
    assert stats["paths"]["/v1/data_slices"]["counted"] == 1
    assert stats["paths"]["/v1/realtime_data"]["counted"] == 1
    lines = err.splitlines()
    assert len(lines) == 3, err
    assert f"GET /v1/data_slices 200 client_id={simulated.client_id} " in lines[0]
    assert f"GET /v1/realtime_data 200 client_id={simulated.client_id} " in lines[1]
    assert lines[2].endswith("GET /_simulator/stats 200 (not counted)")
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} GET ", line) for line in lines)
    assert simulated.api_key not in err


def test_simulator_announces_itself_for_people() -> None:
    """Without --json the simulator prints the lines to export, and stops after --duration."""
    result = run("simulator", "--port", "0", "--duration", "0.5")
    assert (result.code, result.err) == (0, "")
    assert "export WMSPANEL_BASE_URL=http://127.0.0.1:" in result.out
    assert "Edges overview" in result.out


# The demo ------------------------------------------------------------------------------------


def test_demo_command_prints_every_target() -> None:
    """demo --json prints figures of its seven targets, then stops by itself, exit code 0."""
    # Only what needs a real process is checked here; the cadence is pinned on a virtual
    # clock below, where a loaded machine cannot make it late.
    result = run("demo", "--json", "--duration", "3")
    assert (result.code, result.err) == (0, "")
    snapshots = result.json_lines
    assert all(snapshot["error"] is None for snapshot in snapshots)
    assert len({snapshot["name"] for snapshot in snapshots}) == 7  # 4 slices, 3 busiest streams


class TimedLines(io.StringIO):
    """A stdout that notes the (virtual) time at which each line is written."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.lines += [(anyio.current_time(), line) for line in text.splitlines()]
        return len(text)


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_demo_polls_each_target_every_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo polls its seven targets within its first second, then each every 1 s."""
    stdout = TimedLines()
    monkeypatch.setattr(sys, "stdout", stdout)
    args = build_parser().parse_args(["demo", "--json"])
    started = anyio.current_time()
    with anyio.move_on_after(10.5):
        await _demo(args)
    polled: dict[str, list[float]] = {}
    for printed_at, line in stdout.lines:
        snapshot = json.loads(line)
        assert snapshot["error"] is None
        # Printed as soon as answered: the poll started its latency earlier.
        polled.setdefault(snapshot["name"], []).append(printed_at - snapshot["latency"] - started)
    assert len(polled) == 7  # four slices and the three busiest streams
    for times in polled.values():
        assert 0 <= times[0] < 1.0
        assert len(times) >= 10
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert gaps == pytest.approx([1.0] * len(gaps), abs=1e-5)


def test_demo_live_view_in_a_terminal() -> None:
    """In a terminal the demo draws a table with figures, sparklines and quota; Ctrl-C exits 0."""
    import pty

    leader, follower = pty.openpty()
    env = environment(COLUMNS="150", LINES="30", TERM="xterm")
    process = subprocess.Popen(  # noqa: S603 - our own command
        [*command(), "demo"], stdin=follower, stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + TIMEOUT
    while b"polls" not in screen or screen.count(b"ok ") < 7:
        assert time.monotonic() < deadline, screen
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            screen += os.read(leader, 65536)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=TIMEOUT) == 0
    os.close(leader)
    text = screen.decode("utf-8", "replace")
    for fragment in ("Target", "Connected", "Bandwidth", "Top countries", "All streams"):
        assert fragment in text
    assert "bit/s" in text
    assert "calls today" in text
    assert "Traceback" not in text


def test_demo_stops_quietly_when_the_reader_goes_away() -> None:
    """`demo --json | head -1`: a closed pipe ends the demo with exit 0 and no traceback."""
    process = start("demo", "--json")
    json.loads(read_line(process))
    assert process.stdout is not None
    process.stdout.close()
    assert process.wait(timeout=TIMEOUT) == 0
    assert process.stderr is not None
    with process.stderr:
        assert process.stderr.read() == ""


# In-process checks of small pieces ----------------------------------------------------------


def test_version_and_entry_point() -> None:
    """The installed wmspanel-async script runs the same main."""
    script = Path(sys.executable).with_name("wmspanel-async")
    if not script.exists():  # pragma: no cover - the package is always installed in our venvs
        pytest.skip("wmspanel-async script not installed")
    completed = subprocess.run(  # noqa: S603 - our own command
        [str(script), "--version"], capture_output=True, text=True, check=False, timeout=TIMEOUT
    )
    assert completed.returncode == 0
    assert completed.stdout.startswith("wmspanel-async ")


@pytest.mark.parametrize(
    ("command", "fragments"),
    [
        ("slices", ["List the data slices the API key may see"]),
        ("realtime", ["Show the realtime figures of a data slice once", "deep-stats streams"]),
        ("watch", ["--stream ID", "--server ID", "repeatable", "server's page"]),
        (
            "simulator",
            [
                "(default: 127.0.0.1)",
                "(default: 8080)",
                "--seed N",
                "--daily-limit N",
                "--latency S",
                "--error-rate FRACTION",
                "(default: 0)",
            ],
        ),
        ("demo", ["--seed N", "(default: 0)"]),
    ],
)
def test_help_describes_each_command(
    capsys: pytest.CaptureFixture[str], command: str, fragments: list[str]
) -> None:
    """Each command's --help says what it does, and shows its defaults and metavars."""
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    for fragment in fragments:
        assert fragment in text
    assert "$WMSPANEL" not in text  # "(default: $WMSPANEL_API_KEY)" read as a path


def test_main_in_process_returns_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """main() returns the exit code and prints one line; only --version and --help exit."""
    assert main(["slices", "--client-id", "x", "--api-key-file", "/nonexistent"]) == 2
    assert capsys.readouterr().err.startswith("wmspanel-async: error: cannot read the API key")
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.startswith("wmspanel-async ")


def test_a_password_in_the_base_url_is_never_printed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A proxy's password in --base-url is blanked in the error line, as the key is."""
    key_file = tmp_path / "key"
    key_file.write_text("0" * 32)
    base_url = "http://user:hunter2@example.com:99999/wms?api_key=hunter3"
    args = ["slices", "--client-id", "x", "--api-key-file", str(key_file), "--base-url", base_url]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("wmspanel-async: error: base_url 'http://user:<redacted>@example.com")
    assert "hunter2" not in err
    assert "hunter3" not in err


@pytest.mark.parametrize(
    ("bits", "text"),
    [
        (0, "0 bit/s"),
        (999, "999 bit/s"),
        (267_784, "268 kbit/s"),
        (1_234_567, "1.23 Mbit/s"),
        (15_488_772_000, "15.5 Gbit/s"),
        (10**18, "1000 Pbit/s"),
    ],
)
def test_human_bandwidth(bits: int, text: str) -> None:
    """Bandwidth is shown in bits per second with decimal units, three digits at most."""
    assert human_bandwidth(bits) == text


def test_sparkline() -> None:
    """Sparklines span the range seen, at least a tenth of the top, flat lines in the middle."""
    assert sparkline([]) == ""
    assert sparkline([5, 5, 5]) == "▄▄▄"
    assert sparkline([0, 5, 10]) == "▁▅█"
    assert sparkline([1000, 1010]) == "▇█"  # a 1 % move is a small step, not the full height


def test_cli_without_rich_says_which_extra_to_install(tmp_path: Path) -> None:
    """Without the cli extra the command names it, in one line, with exit code 2."""
    script = tmp_path / "no_rich.py"
    script.write_text(
        "import sys\n"
        "sys.modules['rich'] = None  # as if the cli extra were not installed\n"
        "from wmspanel_async.cli import main\n"
        "sys.exit(main(['slices']))\n"
    )
    completed = subprocess.run(  # noqa: S603 - our own command
        [*python_command(), str(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    result = Result(completed)
    result.assert_one_line_error(2, "pip install 'wmspanel-async[cli]'")


NOW = dt.datetime(2026, 3, 2, 12, 0, 5, tzinfo=dt.timezone.utc)


def poller_stats(**changes: Any) -> PollerStats:
    values: dict[str, Any] = {
        "targets": 2,
        "interval": 1.0,
        "effective_interval": 1.0,
        "polls": 12,
        "snapshots": 12,
        "unchanged": 0,
        "skipped_busy": 0,
        "skipped_slow_consumer": 1,
        "skipped_backoff": 0,
        "skipped_quota": 0,
        "errors": {},
        "targets_down": 0,
        "quota": QuotaStatus(
            used=13,
            remaining=14_987,
            limit=15_000,
            resets_at=dt.datetime(2026, 3, 3, tzinfo=dt.timezone.utc),
        ),
        "reserved_calls": 750,
        "paused": False,
        "lateness_p50": 0.0,
        "lateness_p99": 0.0,
        "lateness_max": 0.0,
    }
    values.update(changes)
    return PollerStats(**values)


def snapshot(target: Target, connected: int | None, error: WMSPanelError | None = None) -> Snapshot:
    stats = None
    if connected is not None:
        stats = RealtimeStats(connected=connected, bandwidth=connected * 2_000_000)
    return Snapshot(target=target, stats=stats, error=error, fetched_at=NOW, latency=0.042)


def screen(view: WatchView, stats: PollerStats, width: int = 160) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(view.render(stats, NOW, width))
    return console.export_text()


def test_watch_view_rows_errors_and_figures() -> None:
    """The live view shows figures, a failing target's error, and the poller's counts."""
    up, down, waiting = Target("a" * 24), Target("b" * 24), Target("c" * 24, stream="s")
    view = WatchView([up, down, waiting], {"a" * 24: "Main", "b" * 24: "Backup"}, "Title")
    for connected in (1000, 1100, 1200):
        view.add(snapshot(up, connected))
    view.add(snapshot(down, None, ServerError("boom", status_code=503)))
    text = screen(view, poller_stats(errors={"ServerError": 1}))
    assert "Title" in text
    assert "12:00:05 UTC" in text
    main_row = next(line for line in text.splitlines() if "Main" in line)
    assert "1,200" in main_row
    assert "2.40 Gbit/s" in main_row
    assert "ok 42 ms" in main_row
    assert "▁▅█" in main_row  # the recent connected counts, 1000 to 1200
    backup_row = next(line for line in text.splitlines() if "Backup" in line)
    assert "ServerError" in backup_row
    assert "waiting" in next(line for line in text.splitlines() if "cccc" in line)
    assert "polls 12 · skipped 1 · errors 1 · calls today 13 of 15,000, reset 00:00 UTC" in text


def test_watch_view_keeps_last_figures_of_a_failing_target() -> None:
    """A target that fails after a success keeps its figures and shows the error."""
    target = Target("a" * 24)
    view = WatchView([target], {}, "Title")
    view.add(snapshot(target, 500))
    view.add(snapshot(target, None, ServerError("boom", status_code=500)))
    view.warning = "GET /v1/realtime_data failed; retry 1 of 2"
    text = screen(view, poller_stats(effective_interval=5.7, paused=True))
    row = next(line for line in text.splitlines() if "aaaa" in line)
    assert "500" in row
    assert "ServerError" in row
    assert "stretched to fit the daily calls" in text
    assert "every 5.7 s" in text
    assert "paused until the quota resets" in text
    assert "warning: GET /v1/realtime_data failed; retry 1 of 2" in text


@pytest.mark.parametrize(("width", "countries"), [(80, 1), (100, 2), (130, 3)])
def test_watch_view_fits_the_terminal(width: int, countries: int) -> None:
    """At 80, 100 or 130 columns every row fits, with as many countries as there is room for."""
    target = Target("a" * 24, stream="b" * 24)
    view = WatchView([target], {"a" * 24: "A slice with a long name"}, "Title")
    for connected in range(1000, 1060):
        view.add(
            Snapshot(
                target=target,
                stats=RealtimeStats(
                    connected=connected,
                    bandwidth=connected * 2_000_000,
                    geo=(
                        GeoEntry(country="US", connected=500),
                        GeoEntry(country="BR", connected=300),
                        GeoEntry(country="DE", connected=200),
                    ),
                ),
                error=None,
                fetched_at=NOW,
                latency=0.042,
            )
        )
    lines = screen(view, poller_stats(), width).splitlines()
    row = next(line for line in lines if "A slice" in line)
    assert all(len(line) <= width for line in lines)
    assert len(re.findall(r"[A-Z]{2} \d+%", row)) == countries
    assert row.rstrip().endswith("ok 42 ms")
    assert "…" in row  # the long target name is shortened, not wrapped


def test_plain_lines_for_pipes() -> None:
    """Without a terminal, watch prints one line per snapshot, errors included."""
    target = Target("a" * 24)
    assert plain_line(snapshot(target, 0), {"a" * 24: "Main"}) == (
        "12:00:05 Main: 0 connected, 0 bit/s, -"
    )
    failed = plain_line(snapshot(target, None, ServerError("boom", status_code=500)), {})
    assert failed == f"12:00:05 {'a' * 24}: ServerError: boom"


def test_internal_errors_are_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    """A bug of ours still ends in one line (exit 1), out of any exception group."""
    bug = ExceptionGroup("task group", [ExceptionGroup("inner", [RuntimeError("boom\nmore")])])
    assert _fail(_unwrap(bug)) == 1
    assert capsys.readouterr().err == (
        "wmspanel-async: error: internal error (RuntimeError: boom more); please report it\n"
    )


# -- the shared ledger ---------------------------------------------------------------------


def test_ledger_in_a_file_counts_across_runs(simulated: Simulated, tmp_path: Path) -> None:
    """--ledger PATH: each run adds its calls to the day's count in the file."""
    path = tmp_path / "calls.json"
    for _ in range(2):
        result = simulated.run("realtime", simulated.slices[0]["id"], "--ledger", str(path))
        assert result.code == 0, result.err
    (counts,) = json.loads(path.read_text())["days"].values()
    assert counts == {simulated.client_id: 2}


def test_ledger_in_redis_from_the_environment(
    simulated: Simulated, redis_server: RedisServer
) -> None:
    """WMSPANEL_LEDGER_URL=redis://...: the calls are counted in Redis."""
    slice_id = simulated.slices[0]["id"]
    for _ in range(3):
        result = simulated.run("realtime", slice_id, WMSPANEL_LEDGER_URL=redis_server.url)
        assert result.code == 0, result.err
    import redis

    with redis.Redis.from_url(redis_server.url) as connection:
        (key,) = connection.keys("wmspanel:*:calls:*")
        counts = connection.hgetall(key)
    # One entry per run (per ledger), each of one call: the day's count is their sum.
    assert sorted(counts.values()) == [b"0", b"1", b"1", b"1"]  # and the count's marker
    assert key.decode().startswith(f"wmspanel:{{{simulated.client_id}}}:calls:")


def test_a_redis_ledger_that_is_down_is_one_line_and_exit_4(simulated: Simulated) -> None:
    """Redis not answering: exit 4, one line naming Redis without its password."""
    url = f"redis://:hunter2-pw@127.0.0.1:{free_port()}/0"
    result = simulated.run("realtime", simulated.slices[0]["id"], "--ledger", url)
    result.assert_one_line_error(4, "Redis at redis://127.0.0.1:", "nothing was sent")
    assert "hunter2" not in result.err
