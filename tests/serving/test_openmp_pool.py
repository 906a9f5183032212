"""serving.openmp_pool: a thread's OpenMP pool threads end when it is released, and ForwardLock releases it when a
thread leaves the lock while another waits (the OS threads of this process are the observable)."""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from serving.openmp_pool import ForwardLock, _pause_fn, release_openmp_pool

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/task") or _pause_fn() is None, reason="needs Linux and an OpenMP runtime in torch"
)


def tids() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def parallel_op() -> None:
    """Large enough that torch's at::parallel_for opens an OpenMP region on every thread."""
    torch.nn.functional.gelu(torch.randn(2_000_000)).sum()


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def pool_workers_of(fn) -> set[str]:
    """The OS threads that appear while ``fn`` runs a parallel op in this thread (its fresh OpenMP pool)."""
    release_openmp_pool()
    t0 = tids()
    fn()
    return tids() - t0


def test_release_ends_the_calling_threads_pool_threads(two_threads):
    workers = pool_workers_of(parallel_op)
    assert workers, "a 2-thread parallel region starts a pool worker"
    assert release_openmp_pool() is True
    assert not workers & tids()
    parallel_op()  # a new pool on the next region: still works
    assert release_openmp_pool() is True


@pytest.mark.parametrize("lock_cls, released", [(ForwardLock, True), (threading.Lock, False)])
def test_forward_lock_frees_a_leaving_threads_pool_while_another_waits(two_threads, lock_cls, released):
    lock = lock_cls()
    seen: dict[str, set[str]] = {}
    entered_b = threading.Event()

    def a() -> None:
        with lock:
            seen["workers"] = pool_workers_of(parallel_op)
            tb.start()
            deadline = time.monotonic() + 10
            while not _waiting(lock) and time.monotonic() < deadline:  # B is blocked on the lock
                time.sleep(0.005)
        seen["after"] = tids()
        entered_b.wait(10)

    def b() -> None:
        with lock:
            entered_b.set()

    tb = threading.Thread(target=b)
    ta = threading.Thread(target=a)
    ta.start()
    ta.join(20)
    tb.join(20)
    assert seen["workers"]
    assert (not seen["workers"] & seen["after"]) is released


def _waiting(lock) -> bool:
    if isinstance(lock, ForwardLock):
        return lock._waiting > 0
    time.sleep(0.2)  # a plain Lock cannot say; give B time to block
    return True
