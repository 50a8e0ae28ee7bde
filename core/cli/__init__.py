"""Command-line interface sharing the engine the app uses."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from core.errors import WorkbenchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's, absl's and CUDA's own log lines (hidden by default); "
                             "accepted anywhere on the line")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


#: Each command's module adds its sub-command here (scan, train, evaluate, predict, export).
_EXTRA_COMMANDS: list = []


VERBOSE = "--verbose"


def main(argv: list[str] | None = None) -> int:
    _load_extra_commands()
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = VERBOSE in argv[: argv.index("--") if "--" in argv else len(argv)]
    if verbose:
        argv.remove(VERBOSE)
    args = build_parser().parse_args(argv)
    args.verbose = verbose
    try:
        with _native_logs(verbose):
            return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`... --json | head`): stop quietly, as other command-line tools do.
        _silence_stdout()
        return 1
    except OSError as exc:  # a file-system refusal no check foresaw: its reason, never the server path
        print(f"error: the file system refused: {exc.strerror or type(exc).__name__}", file=sys.stderr)
        return 2


#: Set before TensorFlow is imported: its C++ logging, absl's, gRPC's and oneDNN's notice.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "ABSL_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR",
             "GLOG_minloglevel": "3"}


@contextmanager
def _native_logs(verbose: bool) -> Iterator[None]:
    """Hide what native libraries write straight to file descriptor 2, unless ``verbose``.

    TensorFlow prints seven lines at import and first use, one of them "failed call to cuInit" on a
    machine without a GPU, which reads like a real error. Some come from absl before its logging is
    set up, so no environment variable stops them: the descriptor itself is pointed at /dev/null
    for the command, while Python's own ``sys.stderr`` (our "error: ..." lines, tracebacks) keeps
    the terminal. Restored afterwards, so an in-process caller (tests) gets its stderr back.
    """
    if verbose or "tensorflow" in sys.modules:  # already imported: its lines are out, nothing to hide
        yield
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # TensorFlow's Python-side warnings (e.g. "triggered tf.function retracing", a hint for developers)
    # go through Python's logging to sys.stderr, past the descriptor: its logger is quietened too.
    tf_logger = logging.getLogger("tensorflow")
    tf_level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        yield from _quiet_descriptor()
    finally:
        tf_logger.setLevel(tf_level)


def _quiet_descriptor() -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null while Python's ``sys.stderr`` keeps the terminal."""
    try:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    old_stderr = sys.stderr
    try:
        uses_fd2 = old_stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        uses_fd2 = False  # a test's capture object: it does not write to descriptor 2
    try:
        if uses_fd2:
            old_stderr.flush()
            sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=old_stderr.encoding,
                                   errors="backslashreplace")
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        if uses_fd2:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = old_stderr


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
                   "core.cli.ensemble", "core.cli.site"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        if mod.register not in _EXTRA_COMMANDS:
            _EXTRA_COMMANDS.append(mod.register)
