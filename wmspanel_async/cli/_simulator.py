"""``wmspanel-async simulator``: the API's simulator served on a port, for other tools.

It prints where it listens and the simulated account's credentials, so that a client, a
script or another program's tests can be pointed at it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import AsyncExitStack

import anyio

from wmspanel_async import APIConnectionError
from wmspanel_async._constants import DEFAULT_DAILY_LIMIT
from wmspanel_async.testing import Account, Simulator, serve

from ._common import UsageError, _print_line
from ._options import _backend_option, _duration_option, _fraction, _Parser


def add_simulator(commands: argparse._SubParsersAction[_Parser]) -> None:
    """Declare the ``simulator`` command and its options."""
    simulator = commands.add_parser(
        "simulator",
        parents=[_backend_option(), _duration_option()],
        help="serve the WMSPanel API simulator on a loopback port",
        description="Serve the simulator of the WMSPanel API, for other tools and for tests.",
    )
    simulator.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="a loopback address to listen on (default: %(default)s)",
    )
    simulator.add_argument(
        "--port",
        type=int,
        default=8080,
        metavar="PORT",
        help="the port to listen on; 0 picks a free one (default: %(default)s)",
    )
    simulator.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="picks the account, its key and its figures (default: %(default)s)",
    )
    simulator.add_argument(
        "--daily-limit",
        type=int,
        default=DEFAULT_DAILY_LIMIT,
        metavar="N",
        help="calls the account may make per UTC day (default: %(default)s)",
    )
    simulator.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds every answer waits (default: %(default)g)",
    )
    simulator.add_argument(
        "--error-rate",
        type=_fraction,
        default=0.0,
        metavar="FRACTION",
        help="share of requests answered 500, from 0 to 1 (default: %(default)g)",
    )
    simulator.add_argument(
        "--log-requests",
        action="store_true",
        help="log one line per request on stderr: time, method, path, status, client_id "
        "(never the api_key); GET /_simulator/stats gives today's calls per key and path",
    )
    simulator.add_argument(
        "--json", action="store_true", help="announce the address and account as one JSON line"
    )
    simulator.set_defaults(run=_simulator)


async def _simulator(args: argparse.Namespace) -> None:
    try:
        account = Account.generate(args.seed, daily_limit=args.daily_limit)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    simulator = Simulator(
        [account],
        seed=args.seed,
        latency=args.latency,
        error_rate=args.error_rate,
        log_requests=args.log_requests,
    )
    if args.log_requests:
        _log_requests_to_stderr()
    async with AsyncExitStack() as stack:
        try:
            server = await stack.enter_async_context(
                serve(simulator, host=args.host, port=args.port)
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            msg = f"cannot serve on {args.host} port {args.port}: {exc.strerror or exc}"
            raise APIConnectionError(msg) from None
        _announce(server.url, account, as_json=args.json)
        await anyio.sleep_forever()


def _log_requests_to_stderr() -> None:
    """Send the simulator's request log (logger ``wmspanel_async.simulator``) to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
    )
    request_log = logging.getLogger("wmspanel_async.simulator")
    request_log.addHandler(handler)
    request_log.setLevel(logging.INFO)
    request_log.propagate = False


def _announce(url: str, account: Account, *, as_json: bool) -> None:
    import json  # noqa: PLC0415 - only this command needs it

    # The simulated account's key is made up from the seed: showing it is the point.
    user_key = next(key for key in account.keys if key.slices is not None)
    if as_json:
        _print_line(
            json.dumps(
                {
                    "base_url": url,
                    "client_id": account.client_id,
                    "api_key": account.api_key,
                    "user_api_key": user_key.key,
                    "daily_limit": account.daily_limit,
                    "data_slices": [
                        {"id": s.id, "name": s.name, "lite": s.lite} for s in account.slices
                    ],
                    "servers": [{"id": s.id, "name": s.name} for s in account.servers],
                    "streams": [{"id": s.id, "name": s.name} for s in account.streams],
                }
            )
        )
        return
    slices = ", ".join(f"{s.name} ({s.id}{', lite' if s.lite else ''})" for s in account.slices)
    _print_line(
        f"WMSPanel API simulator on {url} (a simulated account; Ctrl-C to stop)\n"
        "Point a client at it:\n"
        f"  export WMSPANEL_BASE_URL={url}\n"
        f"  export WMSPANEL_CLIENT_ID={account.client_id}\n"
        f"  export WMSPANEL_API_KEY={account.api_key}\n"
        f"Data slices: {slices}"
    )
