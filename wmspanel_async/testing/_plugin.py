"""The pytest plugin: fixtures that put the simulator and a client wired to it in your tests.

Installed with the ``testing`` extra, it is found by pytest through the ``pytest11`` entry
point; nothing needs configuring. The async fixtures run under anyio's pytest plugin, so use
them from tests marked ``@pytest.mark.anyio``::

    @pytest.mark.anyio
    async def test_my_dashboard(wmspanel_client):
        slices = await wmspanel_client.data_slices()
        ...

Override ``wmspanel_seed`` or ``wmspanel_account`` in a ``conftest.py`` to change what the
simulator serves. The simulator's modules are imported only when a fixture is used, so the
plugin costs nothing to test suites that do not use it.
"""

from __future__ import annotations

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
