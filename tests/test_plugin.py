"""The pytest plugin's fixtures, used the way our users use them in their own suites."""

from __future__ import annotations

import textwrap

import anyio
import pytest
from support import python_command, run_pytest_as_user

from wmspanel_async import APIError, ServerError, WMSPanelClient
from wmspanel_async.testing import Account, Fault, LoopbackServer, Simulator

pytest_plugins = ["pytester"]


@pytest.mark.anyio
async def test_client_fixture_talks_to_the_simulator(
    wmspanel_client: WMSPanelClient, wmspanel_simulator: Simulator
) -> None:
    """wmspanel_client is a ready client whose calls reach wmspanel_simulator."""
    slices = await wmspanel_client.data_slices()
    assert [s.id for s in slices] == [s.id for s in wmspanel_simulator.account.slices]
    stats = await wmspanel_client.realtime(slices[0])
    assert stats.connected > 0
    assert wmspanel_simulator.calls_today() == 2


@pytest.mark.anyio
async def test_faults_reach_the_client_fixture(
    wmspanel_client: WMSPanelClient, wmspanel_simulator: Simulator
) -> None:
    """Faults injected into the simulator fixture show in the client fixture's calls."""
    wmspanel_simulator.inject(Fault.http_status(503, retry_after=0), times=3)
    with pytest.raises(ServerError):
        await wmspanel_client.data_slices()
    wmspanel_simulator.inject(Fault.status("Error"))
    with pytest.raises(APIError):
        await wmspanel_client.data_slices()


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_client_fixture_works_on_a_virtual_clock(
    wmspanel_client: WMSPanelClient, wmspanel_simulator: Simulator
) -> None:
    """The in-process fixtures need no socket, so they run on a virtual clock too."""
    wmspanel_simulator.latency = 8  # just under the client's 10 s read timeout
    started = anyio.current_time()
    slices = await wmspanel_client.data_slices()
    assert anyio.current_time() - started == pytest.approx(8)
    assert len(slices) == 4


@pytest.mark.anyio
async def test_server_fixture_serves_on_loopback(
    wmspanel_server: LoopbackServer, wmspanel_account: Account
) -> None:
    """wmspanel_server serves the simulator on a free loopback port."""
    assert wmspanel_server.url.startswith("http://127.0.0.1:")
    async with WMSPanelClient(
        wmspanel_account.client_id, wmspanel_account.api_key, base_url=wmspanel_server.url
    ) as client:
        assert len(await client.data_slices()) == 4


class TestOverridingTheSeed:
    """A class (or conftest.py) that overrides wmspanel_seed gets another account."""

    @pytest.fixture
    def wmspanel_seed(self) -> int:
        """Seed 42 instead of 0."""
        return 42

    def test_seed_override_changes_the_account(self, wmspanel_account: Account) -> None:
        """The account fixture follows the overridden seed."""
        assert wmspanel_account == Account.generate(42)
        assert wmspanel_account != Account.generate(0)


def test_account_fixture_default(wmspanel_account: Account, wmspanel_simulator: Simulator) -> None:
    """By default the simulator serves Account.generate(0)."""
    assert wmspanel_simulator.accounts == (wmspanel_account,)
    assert wmspanel_account == Account.generate(0)


def test_plugin_is_found_through_its_entry_point(pytester: pytest.Pytester) -> None:
    """A user's suite gets the fixtures with no configuration: pytest finds the plugin."""
    pytester.makepyfile(
        test_user=textwrap.dedent(
            """
            import pytest

            @pytest.fixture
            def anyio_backend():
                return "asyncio"

            @pytest.mark.anyio
            async def test_dashboard(wmspanel_client, wmspanel_simulator):
                slices = await wmspanel_client.data_slices()
                assert slices[0].name == "All streams"
                assert wmspanel_simulator.calls_today() == 1
            """
        )
    )
    result = pytester.run(*python_command(), "-m", "pytest", "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)


#: Tests a user may write: the first two are not run by anyio, the last two are, and must
#: pass whatever failed before them (pytest's own error left the fixtures broken for them).
MIXED_TESTS = """
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"

async def test_unmarked(wmspanel_client):
    await wmspanel_client.data_slices()

@pytest.mark.asyncio
async def test_marked_for_pytest_asyncio(wmspanel_client):
    await wmspanel_client.data_slices()

def test_not_async(wmspanel_server):
    pass

@pytest.mark.anyio
async def test_marked_after_the_others(wmspanel_client):
    assert len(await wmspanel_client.data_slices()) == 4

@pytest.mark.anyio
async def test_marked_server_after_the_others(wmspanel_server):
    assert wmspanel_server.url.startswith("http://127.0.0.1:")
"""


def test_tests_anyio_will_not_run_fail_with_what_to_add(pytester: pytest.Pytester) -> None:
    """Unmarked, pytest-asyncio-marked and sync tests fail at setup saying what to add."""
    pytester.makepyfile(test_user=MIXED_TESTS)
    result = run_pytest_as_user(pytester)
    result.assert_outcomes(passed=2, errors=3)
    output = result.stdout.str()
    for line in (
        "*test_unmarked uses wmspanel_client, an async fixture that only anyio's pytest plugin "
        "can run*it is not marked for anyio. Mark it @pytest.mark.anyio, or mark every test of "
        "its module with `pytestmark = pytest.mark.anyio`*",
        "*test_marked_for_pytest_asyncio uses wmspanel_client*it is marked "
        "@pytest.mark.asyncio, for pytest-asyncio*Mark it @pytest.mark.anyio instead*",
        "*test_not_async uses wmspanel_server*Make it `async def` and mark it @pytest.mark.anyio*",
        '*define an `anyio_backend` fixture that returns "asyncio" or "trio"*MockClock*',
    ):
        result.stdout.fnmatch_lines([line])
    assert "no plugin or hook that handled it" not in output
    assert "AssertionError" not in output


def test_pytest_asyncio_auto_mode_is_named_as_the_cause(pytester: pytest.Pytester) -> None:
    """In pytest-asyncio's auto mode, even anyio-marked tests are told why they cannot run."""
    pytester.makepyfile(
        test_user="""
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_marked(wmspanel_client):
            await wmspanel_client.data_slices()

        async def test_without_our_fixtures():
            pass
        """
    )
    result = run_pytest_as_user(pytester, "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*pytest-asyncio runs in auto mode (asyncio_mode = auto)*Set asyncio_mode = strict*"]
    )
