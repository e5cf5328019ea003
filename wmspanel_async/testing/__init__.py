"""A faithful simulator of the WMSPanel API, and helpers to test code against it.

The :class:`Simulator` is a plain ASGI application. Mount it in process::

    simulator = Simulator(seed=1)
    async with simulator.client() as client:  # a WMSPanelClient, no socket involved
        slices = await client.data_slices()

or on a loopback port, for other tools or to go through a real socket::

    async with serve(simulator, port=8080) as server:
        ...  # WMSPANEL_BASE_URL=server.url

The pytest plugin (installed with the ``testing`` extra) offers the ``wmspanel_simulator``,
``wmspanel_client`` and ``wmspanel_server`` fixtures; see ``docs/simulator.md``.
"""

from .._constants import DEFAULT_DAILY_LIMIT
from ._accounts import COUNTRY_WEIGHTS, Account, APIKey, Server, Slice, Stream
from ._faults import Fault, FaultKind, SimulatedDisconnect
from ._server import LoopbackServer, serve
from ._simulator import (
    DEMO_DAILY_LIMIT,
    IN_PROCESS_BASE_URL,
    RequestRecord,
    Simulator,
    SimulatorTransport,
)

__all__ = [  # noqa: RUF022 - sorted() order, as the tests check
    "APIKey",
    "Account",
    "COUNTRY_WEIGHTS",
    "DEFAULT_DAILY_LIMIT",
    "DEMO_DAILY_LIMIT",
    "Fault",
    "FaultKind",
    "IN_PROCESS_BASE_URL",
    "LoopbackServer",
    "RequestRecord",
    "Server",
    "SimulatedDisconnect",
    "Simulator",
    "SimulatorTransport",
    "Slice",
    "Stream",
    "serve",
]
