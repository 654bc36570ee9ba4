"""Returning freed heap memory to the operating system after calibration.

Why: the calibration session (onnxruntime's copy of the weights, every exposed float tensor of a
row) frees tens of MiB in blocks that glibc's allocator keeps for reuse instead of unmapping -- its
mmap threshold grows after large frees, so later large arrays land in the heap too. The lowering that
follows allocates differently shaped arrays (codes, tables), so that memory is not reused and the
compile's resident peak was the calibration's leftovers plus the graph's constants. Measured on
all-MiniLM-L6-v2 (ORT static QDQ, 56 MiB file): ``malloc_trim`` after calibration gave back 36 MiB.

Only glibc has ``malloc_trim``; elsewhere this does nothing (other allocators return memory on their
own terms), and a failure to load libc is not an error: memory use is a cost, never a result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys


def release_freed_heap() -> bool:
    """Ask glibc to unmap free heap pages; True when it was asked (Linux with glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and friends: no malloc_trim
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True
