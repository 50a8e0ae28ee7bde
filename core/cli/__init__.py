"""Command-line interface sharing the engine the app uses."""

from __future__ import annotations

import argparse
import sys

from core.errors import WorkbenchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


#: Each command's module adds its sub-command here (scan, train, evaluate, predict, export).
_EXTRA_COMMANDS: list = []


def main(argv: list[str] | None = None) -> int:
    _load_extra_commands()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`... --json | head`): stop quietly, as other command-line tools do.
        _silence_stdout()
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail a second time."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a real file (tests): nothing left to flush


def _load_extra_commands() -> None:
    import importlib

    for module in ("core.cli.scan", "core.cli.train", "core.cli.evaluate", "core.cli.predict", "core.cli.export",
                   "core.cli.site"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        if mod.register not in _EXTRA_COMMANDS:
            _EXTRA_COMMANDS.append(mod.register)
