"""Ray for command-line use: connect to a cluster or start one, and keep Ray's logs off the terminal.

Ray prints INFO lines, Ray Data progress logs and native (C++) warnings on the driver's stderr. The
CLI sends all of that to a log file for the run (``ray_output_to``) and shows only its own progress;
``--verbose`` lets it through.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from cdp_ray.errors import CdpRayError

QUIET_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_DATA_LOG_LEVEL": "ERROR",
}


def quiet_environment() -> None:
    """Defaults that keep Ray quiet; set before Ray is imported. Values the user exported win."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    import ray.data  # configures its loggers on import, possibly before this ran

    logging.getLogger("ray.data").setLevel(os.environ["RAY_DATA_LOG_LEVEL"])
    ray.data.DataContext.get_current().enable_progress_bars = os.environ["RAY_DATA_DISABLE_PROGRESS_BARS"] == "0"
    warnings.filterwarnings("ignore", module=r"ray(\..*)?$")
    warnings.filterwarnings("ignore", message=r".*ray_remote_args.*deprecated")


def resolve_address(address: str | None = None) -> tuple[str | None, str]:
    """Where to find Ray, as ``ray.init()`` looks: ``(address, where it came from)``; address None
    means start a new local Ray.

    In order: ``address`` (``local``: a new local Ray; ``auto``: any Ray running on this machine), then
    ``$RAY_ADDRESS`` (set under ``ray job submit``), then the cluster ``ray start`` started on this
    machine (the address it records in ``<ray temp dir>/ray_current_cluster``; ``ray stop`` removes it).
    Another Ray merely running here, such as one a notebook started, is not joined.
    """
    from ray._common.utils import get_ray_address_file
    from ray._private.utils import read_ray_address

    if address == "local":
        return None, "--address local"
    if address:
        return address, "--address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "$RAY_ADDRESS"
    started = read_ray_address()
    if started:
        return started, f"the cluster `ray start` started on this machine ({get_ray_address_file(None)})"
    return None, "no --address, no $RAY_ADDRESS and no cluster started by `ray start` here"


def connect(address: str | None = None, *, verbose: bool = False, num_cpus: int | None = None) -> str:
    """Connect to the Ray cluster :func:`resolve_address` finds, or start a new local Ray.

    Returns a one-line description of what it joined.
    """
    import ray

    if ray.is_initialized():
        return "Ray (already connected)"
    quiet = {"logging_level": logging.INFO if verbose else logging.WARNING, "log_to_driver": verbose}
    target, origin = resolve_address(address)
    if target is None:
        ray.init(address="local", include_dashboard=False, num_cpus=num_cpus, **quiet)
        return f"local Ray ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"
    try:
        ray.init(address=target, **quiet)
    except ConnectionError as exc:
        raise CdpRayError(
            f"cannot connect to the Ray cluster at {target!r} (from {origin}): {exc}",
            hint="start it (`ray start --head`, `ray up ray-cluster.yaml`), give another --address, or pass "
                 "`--address local` to run on a new local Ray",
        ) from None
    cpus = int(ray.cluster_resources().get("CPU", 0))
    return f"Ray cluster at {target} ({cpus} CPUs, from {origin})"


def run_log_path() -> Path:
    """A fresh file for this run's Ray logs: ``$CDP_RAY_LOG_DIR`` or ``<tmp>/cdp-ray``."""
    root = Path(os.environ.get("CDP_RAY_LOG_DIR") or Path(tempfile.gettempdir()) / "cdp-ray")
    root.mkdir(parents=True, exist_ok=True)
    return root / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


@contextmanager
def ray_output_to(path: Path) -> Iterator[IO[str]]:
    """Send everything written to file descriptors 1 and 2 (Ray's Python and native logs, errors
    the raylet pushes to the driver) to ``path``, so that stdout stays clean for ``--json``.

    Yields a text stream on the real stderr for the CLI's own messages.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with open(path, "ab") as log:
        for fd in saved:
            os.dup2(log.fileno(), fd)
    terminal = os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8")
    try:
        yield terminal
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        terminal.close()


_REMOTE_ERROR = re.compile(r"^(?:cdp_ray\.errors|[\w.]*cdp_ray[\w.]*)\.(\w+Error): (.*)$(?:\n  hint: (.*)$)?", re.M)


def remote_user_error(exc: BaseException) -> CdpRayError | None:
    """The cdp-ray error behind a Ray task failure whose exception chain Ray did not keep.

    Errors while processing a chunk already come back typed (``run_pipeline`` re-raises them from the
    worker's ``failed`` row). Errors outside that, such as a sink that cannot connect when a worker
    starts, reach the driver only as the traceback text of Ray's ``ActorDiedError`` or Ray Data's
    ``UserCodeException``; the last ``cdp_ray...SomeError: message`` / ``  hint: ...`` lines of it are
    rebuilt as that error class (or :class:`CdpRayError` for a class it cannot find).
    """
    from cdp_ray import errors

    matches = list(_REMOTE_ERROR.finditer(str(exc)))
    if not matches:
        return None
    name, message, hint = matches[-1].groups()
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, CdpRayError)):
        cls = CdpRayError
    err = cls.__new__(cls)
    CdpRayError.__init__(err, message, hint=hint or "")
    return err
