"""``common-events``: the entry point; each subcommand lives in a module of its own.

A command that fails prints one line on stderr (``common-events <command>: <what went
wrong>``) and exits 1; ``--debug`` prints the traceback as well. Usage errors exit 2
(argparse), Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Iterator, Sequence

from common_events import __version__
from common_events.cli.help import HelpFormatter
from common_events.errors import CommonEventsError

logger = logging.getLogger(__name__)

# Each module has ``register(subparsers)``, which adds its subcommand and sets
# ``func(args) -> int`` as the parser default.
SUBCOMMAND_MODULES: tuple[str, ...] = ("demo", "monitor", "schema", "asyncapi", "migrate", "bridge")

PROG = "common-events"
INTERRUPTED = 130
"""Exit status after Ctrl-C, as a shell reports a process ended by SIGINT."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Event contracts and tools for the ticketing services: run the demo, look "
            "at a broker, export and check the events' schemas."
        ),
        epilog=f"'{PROG} COMMAND --help' describes a command and its options.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    _add_debug(parser, default=False)
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, title="commands"
    )
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"common_events.cli.{name}").register(subparsers)
    for command in _subcommands(parser):
        # Also after the command (``schema export DIR --debug``); SUPPRESS keeps the
        # value given before it.
        _add_debug(command, default=argparse.SUPPRESS)
        command.set_defaults(command_prog=command.prog)
    return parser


def _add_debug(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="debug log output, and the traceback of an error",
    )


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser under ``parser``, at any depth (``schema``, ``schema export``...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):  # aliases once
                yield command
                yield from _subcommands(command)


def describe(error: BaseException) -> str:
    """One line for a person: what went wrong, without a traceback."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        where = str(error.filename)
        if error.filename2 is not None:
            where += f" -> {error.filename2}"
        return f"{error.strerror}: {where}"
    text = " ".join(str(error).split())  # one line, whatever the message holds
    if isinstance(error, (CommonEventsError, OSError)):
        return text or type(error).__name__
    # Not one of ours: most likely a bug, and its type says most.
    return f"{type(error).__name__}: {text} (unexpected; --debug shows the traceback)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug: bool = args.debug
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(
        level=logging.DEBUG if debug else level, format="%(levelname)s %(name)s: %(message)s"
    )
    prog: str = getattr(args, "command_prog", PROG)
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as error:
        if debug:
            traceback.print_exc()
        print(f"{prog}: {describe(error)}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
