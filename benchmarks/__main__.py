"""Run the benchmarks: ``python -m benchmarks`` runs every ``benchmarks/*.py`` module with a ``main()``.

    python -m benchmarks                 # all of them, in name order, each with its defaults
    python -m benchmarks decode sinks    # only these
    python -m benchmarks --list

Each module also runs alone with its own options: ``python -m benchmarks.decode --help``.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path


def discover() -> list[str]:
    """Names of the benchmark modules beside this file that define ``main()``."""
    names = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        source = path.read_text()
        if "\ndef main(" in source:
            names.append(path.stem)
    return names


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    known = discover()
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if args[:1] == ["--list"]:
        print("\n".join(known))
        return 0
    unknown = [a for a in args if a not in known]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    failed = []
    for name in args or known:
        print(f"== benchmarks.{name}", flush=True)
        t0 = time.perf_counter()
        saved = sys.argv
        sys.argv = [f"benchmarks.{name}"]  # each main() parses its own options: run it with its defaults
        try:
            importlib.import_module(f"benchmarks.{name}").main()
        except SystemExit as exc:
            if exc.code not in (None, 0):
                failed.append(name)
        except Exception:
            traceback.print_exc()
            failed.append(name)
        finally:
            sys.argv = saved
        print(f"== benchmarks.{name}: {time.perf_counter() - t0:.1f} s{' FAILED' if name in failed else ''}\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
