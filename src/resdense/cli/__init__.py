"""The ``resdense`` command. Each sub-command lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import UserError
from . import (
    compare,
    convert,
    embed,
    evaluate,
    explain,
    export,
    lr_find,
    models,
    predict,
    push,
    serve,
    study,
    train,
)

# Each module exposes add_parser(subparsers); the parser's ``func`` runs the command. The order is --help's.
COMMAND_MODULES = [
    models,
    train,
    lr_find,
    evaluate,
    predict,
    compare,
    export,
    push,
    convert,
    study,
    explain,
    embed,
    serve,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resdense",
        description="ResNet and DenseNet models: inspect, train, evaluate, predict, compare, export.",
    )
    from ..version import __version__

    parser.add_argument("--version", action="version", version=f"resdense {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in COMMAND_MODULES:
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    if "TORCHELASTIC_ERROR_FILE" in os.environ:
        # under torchrun: a failing rank's error goes into torchrun's failure summary
        from torch.distributed.elastic.multiprocessing.errors import record

        return record(_main)(argv)
    return _main(argv)


class _SayOnStderr(logging.Handler):
    """The library's one-line notes (``resdense`` logger: adapted weights, ...) printed as plain lines on
    the stderr of the moment, whatever logging the host set up."""

    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage(), file=sys.stderr, flush=True)


def _say_notes() -> None:
    log = logging.getLogger("resdense")
    if not any(isinstance(h, _SayOnStderr) for h in log.handlers):
        log.addHandler(_SayOnStderr(logging.INFO))
        log.setLevel(logging.INFO)


def _printable_names() -> None:
    """A file or class name that is not UTF-8 (os.fsdecode's surrogates) printed escaped, never a
    UnicodeEncodeError after the work is done: the output files escape names themselves (utils.outputs),
    this is the terminal's safety net for every other line."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _main(argv: list[str] | None = None) -> int:
    _say_notes()
    _printable_names()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handler below, not at exit
        return code
    except BrokenPipeError:
        # the reader went away (`resdense list | head`): stop quietly, as command-line tools do. Point stdout
        # at /dev/null so that the interpreter's final flush does not fail again (Python's documented way).
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe
    except UserError as e:
        # a name that is not UTF-8 (os.fsdecode's surrogates) said as its bytes, \xNN, never a crash
        text = str(e).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        print(f"resdense {args.command}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"resdense {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a full or read-only disk met outside the atomic writes: still one line (issue 19)
        from ..utils.io import STORAGE_ERRNOS

        if e.errno not in STORAGE_ERRNOS:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"resdense {args.command}: error: {where}cannot write ({e.strerror})", file=sys.stderr)
        return 2
