"""Free a thread's OpenMP thread pool, so decoding in other threads keeps libgomp's fast barriers.

libgomp (the OpenMP runtime of torch's Linux CPU wheels) gives every thread that runs a parallel region its own pool of
worker threads, kept until that thread exits. Once the process's pools hold more threads than it has CPUs, every
barrier switches from spinning (300k iterations) to a throttled spin of 100 and then a futex sleep (libgomp's env.c,
OMP_WAIT_POLICY unset; 1000 with ACTIVE, which cannot raise it): each of the hundreds of small parallel regions in a
decode step then pays a wake-up. A server loads and calibrates its models in the main thread and decodes in worker
threads: two pools of two on a 2-core machine, and decode steps ran up to 2x slower than the same steps in the main
thread (``bench/openmp_pool.py`` measures it). Freeing the loading thread's pool
(``omp_pause_resource_all(omp_pause_hard)``, OpenMP 5.0) once it is done puts the workers back on the fast path.
Worker threads free theirs when they exit.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading

log = logging.getLogger(__name__)

OMP_PAUSE_HARD = 2  # omp_pause_resource_t: frees the pool's threads (soft may keep them)


@functools.cache
def _pause_fn() -> ctypes._CFuncPtr | None:
    """``omp_pause_resource_all`` of the OpenMP runtime this process has loaded (libgomp or LLVM's libomp), if any."""
    import torch  # noqa: F401  heavy: loads the OpenMP runtime this module looks for

    with open("/proc/self/maps", encoding="utf-8") as f:
        libs = {line.split()[-1] for line in f if "/lib" in line and ("gomp" in line or "libomp" in line)}
    for path in sorted(libs):
        try:
            fn = ctypes.CDLL(path).omp_pause_resource_all
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    return None


def release_openmp_pool() -> bool:
    """Free the calling thread's OpenMP worker threads (the next parallel region here starts a new pool).

    Returns False where it cannot (no OpenMP runtime found, not Linux, or called inside a parallel region).
    """
    try:
        fn = _pause_fn()
    except OSError:  # no /proc: not Linux
        return False
    if fn is None:
        return False
    ok = fn(OMP_PAUSE_HARD) == 0
    if not ok:
        log.debug("omp_pause_resource_all refused (inside a parallel region?)")
    return ok


class ForwardLock:
    """One forward at a time (a context manager like ``threading.Lock``); a thread leaving while another waits frees
    its OpenMP pool, so requests taking turns on a model do not keep one pool each.

    :meth:`for_device` gives every CPU model of the process one shared lock: two CPU forwards at once only split the
    same cores between two OpenMP pools (and put both on the throttled barriers); a GPU model gets its own.
    """

    _cpu: ForwardLock | None = None
    _cpu_guard = threading.Lock()

    @classmethod
    def for_device(cls, device: object) -> ForwardLock:
        """The process's CPU lock for a CPU ``device`` (a ``torch.device`` or a string), else a new lock."""
        if str(device).split(":")[0] != "cpu":
            return cls()
        with cls._cpu_guard:
            if cls._cpu is None:
                cls._cpu = cls()
            return cls._cpu

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = threading.Lock()  # guards _waiting
        self._waiting = 0

    def __enter__(self) -> ForwardLock:
        with self._count:
            self._waiting += 1
        self._lock.acquire()
        with self._count:
            self._waiting -= 1
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._waiting:
                release_openmp_pool()
        finally:
            self._lock.release()
