"""The pytest plugin: fixtures that put the simulator and a client wired to it in your tests.

Installed with the ``testing`` extra, it is found by pytest through the ``pytest11`` entry
point; nothing needs configuring. The async fixtures run under anyio's pytest plugin, so use
them from tests marked ``@pytest.mark.anyio``::

    @pytest.mark.anyio
    async def test_my_dashboard(wmspanel_client):
        slices = await wmspanel_client.data_slices()
        ...

A test that anyio will not run (unmarked, or marked for pytest-asyncio) fails before its
fixtures are set up, with a message that says what to add, instead of pytest's "requested
an async fixture ... with no plugin or hook that handled it" and the broken fixture state
it leaves to the tests after it.

Override ``wmspanel_seed`` or ``wmspanel_account`` in a ``conftest.py`` to change what the
simulator serves. The simulator's modules are imported only when a fixture is used, so the
plugin costs nothing to test suites that do not use it.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from wmspanel_async import WMSPanelClient
    from wmspanel_async.testing import Account, LoopbackServer, Simulator


@pytest.fixture
def wmspanel_seed() -> int:
    """The seed of the simulated account and its figures (0); override it to change both."""
    return 0


@pytest.fixture
def wmspanel_account(wmspanel_seed: int) -> Account:
    """The account the simulator serves: ``Account.generate(wmspanel_seed)``; override it."""
    from wmspanel_async.testing import Account  # noqa: PLC0415 - see the module docstring

    return Account.generate(wmspanel_seed)


@pytest.fixture
def wmspanel_simulator(wmspanel_account: Account, wmspanel_seed: int) -> Simulator:
    """A fresh simulator serving ``wmspanel_account``, for one test."""
    from wmspanel_async.testing import Simulator  # noqa: PLC0415 - see the module docstring

    return Simulator([wmspanel_account], seed=wmspanel_seed)


@pytest.fixture
async def wmspanel_client(wmspanel_simulator: Simulator) -> AsyncIterator[WMSPanelClient]:
    """A ``WMSPanelClient`` with the account's key, talking to the simulator in process."""
    async with wmspanel_simulator.client() as client:
        yield client


@pytest.fixture
async def wmspanel_server(wmspanel_simulator: Simulator) -> AsyncIterator[LoopbackServer]:
    """The simulator served on a free loopback port; its base URL is ``.url``.

    It needs real sockets, so it cannot be used on a virtual clock.
    """
    from wmspanel_async.testing import serve  # noqa: PLC0415 - see the module docstring

    async with serve(wmspanel_simulator) as server:
        yield server


#: The fixtures of this plugin that only anyio's pytest plugin can run.
ASYNC_FIXTURES = ("wmspanel_client", "wmspanel_server")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail, saying what to add, a test that uses our async fixtures but that anyio won't run.

    anyio's plugin runs a test's async fixtures only when the test requests its
    ``anyio_backend`` fixture, which ``@pytest.mark.anyio`` (or anyio's auto mode) adds.
    Checked before any fixture is set up, so nothing is left half set up for later tests.
    """
    names = getattr(item, "fixturenames", ())
    used = [name for name in ASYNC_FIXTURES if name in names]
    if used and ("anyio_backend" not in names or _pytest_asyncio_auto_mode(item.config)):
        pytest.fail(_not_run_by_anyio(item, used), pytrace=False)


def _pytest_asyncio_auto_mode(config: pytest.Config) -> bool:
    """Whether pytest-asyncio runs in auto mode, where it takes over every async fixture."""
    if not config.pluginmanager.has_plugin("asyncio"):
        return False
    return "auto" in (config.getoption("asyncio_mode", None), config.getini("asyncio_mode"))


def _not_run_by_anyio(item: pytest.Item, used: list[str]) -> str:
    if len(used) == 1:
        fixtures, them = f"{used[0]}, an async fixture", "it"
    else:
        fixtures, them = f"{' and '.join(used)}, async fixtures", "them"
    if _pytest_asyncio_auto_mode(item.config):
        why = (
            "pytest-asyncio runs in auto mode (asyncio_mode = auto), so it takes over every "
            "async fixture, this plugin's too, and runs them outside anyio's test runner. Set "
            "asyncio_mode = strict (pytest-asyncio's default; mark your own asyncio tests "
            "@pytest.mark.asyncio) and mark the tests that use these fixtures @pytest.mark.anyio"
        )
    elif item.get_closest_marker("asyncio") is not None:
        why = (
            "it is marked @pytest.mark.asyncio, for pytest-asyncio, which does not run this "
            "plugin's fixtures. Mark it @pytest.mark.anyio instead: anyio runs it on asyncio too"
        )
    elif not inspect.iscoroutinefunction(getattr(item, "obj", None)):
        why = "it is not a coroutine function. Make it `async def` and mark it @pytest.mark.anyio"
    else:
        why = (
            "it is not marked for anyio. Mark it @pytest.mark.anyio, or mark every test of "
            "its module with `pytestmark = pytest.mark.anyio`"
        )
    return (
        f"{item.name} uses {fixtures} that only anyio's pytest plugin can run, and anyio "
        f"will not run {them} for this test: {why}.\n"
        "anyio runs each marked test on every backend installed (asyncio, and trio if it is "
        'installed); to choose, define an `anyio_backend` fixture that returns "asyncio" or '
        '"trio" (or ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}) '
        "for a virtual clock). See the wmspanel-async docs: How to test against the simulator."
    )
