"""glibc's allocator tuned for the archive's worker processes, which render phantoms and nothing else.

A 1024 px phantom allocates many image-sized temporaries (4-8 MB each). glibc serves blocks that large with a fresh
mmap and unmaps them on free, so every temporary costs the kernel a new mapping and a zero-fill of its pages
(about 2,000 page faults a phantom). Raising the mmap and trim thresholds keeps freed blocks in the heap for the
next temporary. The setting is process-wide and best made before the process allocates much, so it is made only
in worker processes at their start (ProcessPoolExecutor's initializer), never in a process that goes on to run
the pipeline.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc's malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20  # blocks up to 64 MB come from the heap (a 1024 px float64 image is 8 MB)
TRIM_THRESHOLD = 256 << 20  # keep up to 256 MB of freed heap instead of returning it after each large free


def tune_for_rendering() -> bool:
    """Sets this process's glibc malloc thresholds (see the module doc); False where there is no glibc mallopt."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
