"""The `duet` command line.

Each subcommand is one `add_<name>_command(subparsers)` function that builds its parser and
sets `handler` to a function taking the parsed arguments and returning an exit code. To add
a subcommand, write such a function and list it in COMMANDS.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from typing import Callable, Sequence

from duet import __version__


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def _format_size(n_bytes: int) -> str:
    units = ("B", "KiB", "MiB", "GiB")
    size, unit = float(n_bytes), 0
    while size >= 1024 and unit < len(units) - 1:
        size /= 1024
        unit += 1
    return f"{size:.0f} {units[unit]}" if unit == 0 else f"{size:.1f} {units[unit]}"


# --- duet models ---------------------------------------------------------------------------


def _models_list(args: argparse.Namespace) -> int:
    from duet.models import default_pair, list_models

    defaults = set(default_pair())
    rows = [
        (s.name + (" *" if s.name in defaults else ""), s.role, _format_size(s.size),
         "yes" if s.present else "no", str(s.path))
        for s in list_models()
    ]
    header = ("NAME", "ROLE", "SIZE", "PRESENT", "PATH")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print("* default pair (duet models pull with no name fetches both)")
    return 0


def _models_pull(args: argparse.Namespace) -> int:
    from duet.models import default_pair, pull

    for name in args.names or default_pair():
        path = pull(name, progress=not args.quiet)
        print(f"{name}: {path}")
    return 0


def add_models_command(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="list and download models")
    actions = models.add_subparsers(dest="models_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="show catalog models and whether they are downloaded")
    listing.set_defaults(handler=_models_list)
    pulling = actions.add_parser("pull", help="download models (default: the default target + drafter pair)")
    pulling.add_argument("names", nargs="*", metavar="NAME", help="catalog model names")
    pulling.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    pulling.set_defaults(handler=_models_pull)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_models_command]


# --- entry point ---------------------------------------------------------------------------


class _OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (argparse prints the whole usage by default)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(prog="duet", description="On-device LLM inference with a drafter/target pair.")
    parser.add_argument("--version", action="version", version=f"duet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=_OneLineErrorParser)
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from duet.gguf_file import GGUFError
    from duet.models import ModelError

    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("duet: interrupted", file=sys.stderr)
        return 130
    except (CommandError, ModelError, GGUFError, OSError) as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"duet: error: {exc}", file=sys.stderr)
        return 1
