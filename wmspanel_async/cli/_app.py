"""The ``wmspanel-async`` command: its parser, and how a run ends.

Each command declares its subcommand and options in a module of its own (``_calls``,
``_watch``, ``_simulator``, ``_exporter``), from the option sets of ``_options`` and the
helpers of ``_common``; this one puts them under one parser, runs the chosen command until
it ends or a signal stops it, and turns what it raised into an exit code. Every failure
ends in one line on stderr and an exit code that says what kind of failure it was (see
``_common.EXIT_CODES``); no traceback is ever printed, and the API key never is.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

import anyio

from wmspanel_async import (
    APIConnectionError,
    AuthenticationError,
    ConfigurationError,
    InternalError,
    RedisUnavailableError,
    WMSPanelError,
    __version__,
)

from ._calls import add_realtime, add_slices
from ._common import (
    EXIT_API,
    EXIT_AUTH,
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    UsageError,
    _redact,
    _warnings,
)
from ._exporter import add_exporter
from ._options import BACKEND_HELP, BACKENDS, _Parser
from ._simulator import add_simulator
from ._watch import add_demo, add_watch

if sys.version_info < (3, 11):  # pragma: no cover - the backport anyio installs there
    from exceptiongroup import BaseExceptionGroup

logger = logging.getLogger("wmspanel_async")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``wmspanel-async`` command and its subcommands."""
    codes = "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())
    parser = _Parser(
        prog=PROG,
        description="Realtime figures of WMSPanel, and a simulator of its API to try them on.",
        epilog=(
            "Credentials come from WMSPANEL_CLIENT_ID and WMSPANEL_API_KEY (or --client-id and "
            "--api-key-file); WMSPANEL_BASE_URL or --base-url points at a proxy or simulator.\n\n"
            f"exit codes:\n{codes}"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio", help=BACKEND_HELP)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    # Each command's module declares it, in the order --help lists them.
    for add_command in (add_slices, add_realtime, add_watch, add_simulator, add_demo, add_exporter):
        add_command(commands)
    return parser


# Running -------------------------------------------------------------------------------------


#: The signals that stop a command cleanly (exit code 0, leases and connections let go).
#: SIGHUP too: a closed terminal, or a service manager asking the exporter to reload,
#: would otherwise kill the process by the default action, with nothing released. It
#: stops, and does not reload: restart the command to read its settings again.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


async def _stop_on_signals(scope: anyio.CancelScope) -> None:
    try:
        with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async for _ in signals:
                scope.cancel()
                return
    except NotImplementedError:  # pragma: no cover - Windows: Ctrl-C is a KeyboardInterrupt
        return


async def _run(
    command: Callable[[argparse.Namespace], Awaitable[None]], args: argparse.Namespace
) -> int:
    """Run ``command`` until it ends, ``--duration`` passes, or SIGINT, SIGTERM or SIGHUP comes."""
    duration: float | None = getattr(args, "duration", None)
    with anyio.move_on_after(duration):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(_stop_on_signals, task_group.cancel_scope)
            await command(args)
            task_group.cancel_scope.cancel()
    return EXIT_OK


def _unwrap(exc: BaseException) -> BaseException:
    """Return the error that ended the run, out of the task groups' exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        errors: list[BaseException] = [e for e in exc.exceptions if isinstance(e, Exception)]
        exc = (errors or list(exc.exceptions))[0]
    return exc


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, UsageError | ConfigurationError):
        return EXIT_USAGE
    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH
    if isinstance(exc, InternalError):
        return EXIT_INTERNAL
    if isinstance(exc, APIConnectionError | RedisUnavailableError):
        return EXIT_NETWORK
    if isinstance(exc, WMSPanelError):
        return EXIT_API
    return EXIT_INTERNAL


def _fail(exc: BaseException) -> int:
    code = _exit_code(exc)
    message = " ".join(str(exc).split()) or type(exc).__name__
    if code == EXIT_INTERNAL and not isinstance(exc, InternalError):
        message = f"internal error ({type(exc).__name__}: {message}); please report it"
    sys.stderr.write(f"{PROG}: error: {_redact(message)}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``wmspanel-async`` command and return its exit code.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` by default.
    """
    args = build_parser().parse_args(argv)
    if args.backend == "trio":
        try:
            import trio  # noqa: F401, PLC0415 - only to say clearly that it is missing
        except ImportError:  # pragma: no cover - our test environments have trio
            return _fail(UsageError("--backend trio needs trio: pip install trio"))
    _warnings.show, _warnings.view = False, None
    logger.addHandler(_warnings)
    try:
        return anyio.run(_run, args.run, args, backend=args.backend)
    except KeyboardInterrupt:  # pragma: no cover - signals are handled inside the loop
        return EXIT_OK
    except Exception as exc:  # the point: one line, never a traceback
        error = _unwrap(exc)
        if isinstance(error, BrokenPipeError):  # the reader went away, as `| head` does
            _silence_stdout()
            return EXIT_OK
        return _fail(error)
    finally:
        logger.removeHandler(_warnings)


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
