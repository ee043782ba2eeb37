"""The ``cdp-ray`` command line.

:func:`main` is the console script. Ctrl-C at any moment exits 130 with one line, no traceback: during
start-up (importing Typer, Ray, the commands) a signal handler exits at once; inside a command
``KeyboardInterrupt`` unwinds it (a run keeps its committed ranges); after it (Ray's shutdown at exit)
the handler again exits at once.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

EXIT_INTERRUPTED = 130


def _interrupted(signum: int, frame: Any) -> None:
    try:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_INTERRUPTED)


def run_app(app: Any) -> None:
    """Run the Typer ``app``: KeyboardInterrupt inside it exits 130 (Typer's handling); Ctrl-C once it is done exits at once."""
    if signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        app()
    except SystemExit as exc:
        exit_ = exc.__context__  # Typer turns a KeyboardInterrupt into Exit(130) silently: say it once
        if exc.code == EXIT_INTERRUPTED and isinstance(getattr(exit_, "__cause__", None), KeyboardInterrupt):
            sys.stderr.write("interrupted\n")
        raise
    finally:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupted)


def main() -> None:
    """The ``cdp-ray`` console script."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when the caller ignores SIGINT
        signal.signal(signal.SIGINT, _interrupted)
    from cdp_ray.cli.main import app

    run_app(app)
