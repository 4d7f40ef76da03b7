"""Give start-up's freed memory back once the gateway is up (idle footprint).

Start-up imports ~400 modules and builds the services; much of the heap this
touched is garbage afterwards, but glibc's malloc keeps freed memory in its
arenas and CPython's collector only runs when allocation counts say so.
:func:`settle` collects once, moves the survivors (they live as long as the
daemon) out of the collector's scans with ``gc.freeze``, and asks glibc to
return free pages to the kernel (``malloc_trim(0)``).  Outside glibc the trim
is skipped.  One call after start-up: nothing is polled, nothing runs when idle.
"""

from __future__ import annotations

import ctypes
import gc
import logging

log = logging.getLogger(__name__)


def malloc_trim() -> bool:
    """``malloc_trim(0)``: True when glibc returned memory to the kernel."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))


def settle() -> None:
    """Collect start-up's garbage, freeze the rest, return free heap to the kernel."""
    gc.collect()
    gc.freeze()
    released = malloc_trim()
    log.debug("start-up memory settled (malloc_trim released memory: %s)", released)
