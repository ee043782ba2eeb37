"""This process's peak resident memory."""

from __future__ import annotations

import resource
import sys


def peak_rss_mb() -> float:
    """Peak RSS of this process in MB: Linux's ``VmHWM``, which starts afresh at ``exec`` (``ru_maxrss`` keeps
    the high-water mark of the process that forked it, e.g. a large parent's); ``ru_maxrss`` elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / 2**20 if sys.platform == "darwin" else rss / 1024, 1)
