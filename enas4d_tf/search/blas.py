"""Numpy's BLAS on one thread while the search fits and runs its small predictors.

The predictors' matrices are small (hundreds of rows, a few hundred columns), so a second
BLAS thread gains nothing, and on a loaded machine OpenBLAS's waiting threads cost a lot:
on this project's 2 shared cores an MLP fit on 72 rows took 13 s with numpy's default
threads and 0.3 s with one. `one_blas_thread()` sets numpy's bundled OpenBLAS to one thread
for its duration and restores the count after. Where that library cannot be found (another
BLAS, another platform) it does nothing. It changes only numpy's BLAS, not TensorFlow's
threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools

# Names of the thread-count functions in the OpenBLAS builds numpy wheels bundle.
_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")


@functools.lru_cache(maxsize=1)
def _openblas():
    """`(get, set)` of the OpenBLAS numpy loaded, or None."""
    import numpy  # noqa: F401  (loads its BLAS)

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype = ctypes.c_int
                    put.argtypes = [ctypes.c_int]
                    return get, put
    return None


@contextlib.contextmanager
def one_blas_thread():
    """Runs the body with numpy's OpenBLAS on one thread (see the module docstring)."""
    functions = _openblas()
    if functions is None:
        yield
        return
    get, put = functions
    before = int(get())
    put(1)
    try:
        yield
    finally:
        put(before)
