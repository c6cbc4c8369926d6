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

from texturebias.data.loader import prefetch_batches


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


WORKERS_SCRIPT = """
import os, sys, time, torch
from texturebias.data.loader import worker_init

class Slow(torch.utils.data.Dataset):
    def __len__(self): return 10**6
    def __getitem__(self, i):
        # Large items: the queue's pipe fills, so a worker that notices the dead parent still hangs at exit
        # flushing its queue - the orphan of the issue.
        return torch.full((4_000_000,), float(os.getpid()), dtype=torch.float64)
pids = set()
for batch in torch.utils.data.DataLoader(Slow(), batch_size=1, num_workers=2, worker_init_fn=worker_init):
    pids.add(int(batch[0, 0]))
    if len(pids) == 2:
        print(*sorted(pids), flush=True)
        time.sleep(120)  # the workers fill their queues and block: PyTorch's own watchdog does not see a dead parent
"""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited; only its reaping is left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_dataloader_workers_die_with_a_killed_parent() -> None:
    """`kill -9` of a command leaves no orphaned DataLoader worker behind (issue: distort --workers 2)."""
    proc = subprocess.Popen([sys.executable, "-c", WORKERS_SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]  # type: ignore[union-attr]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
