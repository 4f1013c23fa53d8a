"""A benchmark process's own memory, in MB (Linux): its resident size now and its peak so far.

    from _memory import rss_mb, peak_rss_mb    # a benchmark's directory is on sys.path when it runs

Each measurement runs in a fresh subprocess so that the peak (ru_maxrss) is that of one call.
"""
from __future__ import annotations

import os
import resource


def rss_mb() -> float:
    """Resident set size now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
