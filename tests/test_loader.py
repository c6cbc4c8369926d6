"""texturebias.data.loader.prefetch_batches: order, batching, errors, early close."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from texturebias.data import loader
from texturebias.data.loader import default_loader_threads, prefetch_batches


@pytest.mark.parametrize("threads", [0, 1, 3, None])
def test_batches_in_input_order(threads: int | None) -> None:
    def slow_square(i: int) -> int:
        time.sleep(0.001 * ((7 * i) % 5))  # finish out of order
        return i * i

    got = list(prefetch_batches(list(range(23)), slow_square, batch_size=5, threads=threads))
    assert got == [[i * i for i in range(s, min(s + 5, 23))] for s in range(0, 23, 5)]


def test_empty_and_bad_arguments() -> None:
    assert list(prefetch_batches([], str, batch_size=4)) == []
    with pytest.raises(ValueError, match="batch_size"):
        list(prefetch_batches([1], str, batch_size=0))
    with pytest.raises(ValueError, match="lookahead"):
        list(prefetch_batches([1], str, batch_size=1, lookahead=0))


def test_error_raised_at_its_batch_after_earlier_batches() -> None:
    def load(i: int) -> int:
        if i == 6:
            raise OSError("broken image 6")
        return i

    it = prefetch_batches(list(range(10)), load, batch_size=3, threads=2)
    assert next(it) == [0, 1, 2]
    assert next(it) == [3, 4, 5]
    with pytest.raises(OSError, match="broken image 6"):
        next(it)


def test_loads_run_ahead_in_other_threads_and_stop_on_close() -> None:
    seen: list[int] = []
    threads: set[str] = set()

    def load(i: int) -> int:
        seen.append(i)
        threads.add(threading.current_thread().name)
        return i

    it = prefetch_batches(list(range(100)), load, batch_size=2, threads=2, lookahead=2)
    assert next(it) == [0, 1]
    it.close()
    assert all(name.startswith("texturebias-loader") for name in threads)
    assert len(seen) <= 2 * 4  # the yielded batch, the lookahead and the one submitted after it; nothing more


@pytest.mark.parametrize(("cores", "torch_threads", "want"), [(2, 2, 0), (2, 1, 1), (16, 8, 4), (8, 6, 2), (4, 8, 0)])
def test_overlap_threads_are_the_cores_torch_leaves_free(
    monkeypatch: pytest.MonkeyPatch, cores: int, torch_threads: int, want: int
) -> None:
    monkeypatch.setattr(loader.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(torch, "get_num_threads", lambda: torch_threads)
    assert default_loader_threads() == want


def test_without_spare_cores_batches_load_in_parallel_but_never_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """No spare core (torch uses them all): a batch is loaded by several threads, only once the caller asks."""
    monkeypatch.setattr(loader.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    consumed = 0
    started: list[tuple[int, int]] = []  # (item, batches consumed when its load started)
    names: set[str] = set()

    def load(i: int) -> int:
        started.append((i, consumed))
        names.add(threading.current_thread().name)
        time.sleep(0.002)
        return -i

    batches = []
    for batch in prefetch_batches(list(range(9)), load, batch_size=4):
        batches.append(batch)
        time.sleep(0.01)  # the caller's forward pass: nothing may be loading meanwhile
        consumed += 1
    assert batches == [[0, -1, -2, -3], [-4, -5, -6, -7], [-8]]
    assert all(done == i // 4 for i, done in started)
    assert names and all(name.startswith("texturebias-loader") for name in names)


def test_without_spare_cores_an_error_comes_at_its_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)

    def load(i: int) -> int:
        if i in (4, 5):
            raise OSError(f"broken image {i}")
        return i

    it = prefetch_batches(list(range(8)), load, batch_size=3)
    assert next(it) == [0, 1, 2]
    with pytest.raises(OSError, match="broken image 4"):
        next(it)


WORKERS_SCRIPT = """
import ctypes, os, sys, time, torch
from texturebias.data.loader import worker_init

class Slow(torch.utils.data.Dataset):
    def __len__(self): return 10**6
    def __getitem__(self, i):
        # Each worker reports its pid and the signal the kernel will send it when its parent dies
        # (prctl PR_GET_PDEATHSIG = 2): what worker_init promises, checked in the worker itself.
        sig = ctypes.c_int(0)
        ctypes.CDLL(None).prctl(2, ctypes.byref(sig))
        time.sleep(0.01)
        return torch.tensor([os.getpid(), sig.value])
seen = {}
for batch in torch.utils.data.DataLoader(Slow(), batch_size=1, num_workers=2, worker_init_fn=worker_init):
    seen[int(batch[0, 0])] = int(batch[0, 1])
    if len(seen) == 2:
        print(*[f"{pid}:{sig}" for pid, sig in sorted(seen.items())], flush=True)
        time.sleep(120)  # the workers keep filling their queues while the parent is killed
"""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited; only its reaping is left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_dataloader_workers_die_with_a_killed_parent() -> None:
    """Workers are bound to die with their parent (PR_SET_PDEATHSIG), and after `kill -9` of it none is left.

    The orphan of the issue (distort --workers 2) did not reproduce here without the fix, so the first assertion
    checks the mechanism itself: each worker's death signal as the kernel reports it.
    """
    proc = subprocess.Popen([sys.executable, "-c", WORKERS_SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        reported = [item.split(":") for item in proc.stdout.readline().split()]  # type: ignore[union-attr]
        pids = [int(pid) for pid, _ in reported]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        assert [int(sig) for _, sig in reported] == [signal.SIGTERM, signal.SIGTERM]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
