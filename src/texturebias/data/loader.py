"""Batches of loaded inputs, prepared in background threads while the model runs on the previous batch.

Measuring commands (``shape-bias``, ``benchmark``, ``robustness``) decode PNG/JPEG stimuli and run a forward
pass; done one after the other, the decoding adds ~60 % to the forward time on a 2-core CPU. Decoding
(PIL) and NumPy/torch preprocessing release the GIL, so a few threads overlap it with the forward pass
without the start-up cost and pickling of DataLoader worker processes. Results come back in input order and
each item is prepared by the same function as before, so every decision is the same bit for bit.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")


def default_loader_threads() -> int:
    """Threads for :func:`prefetch_batches`: the CPU count, at most 4 (decoding 224² stimuli saturates there)."""
    return max(1, min(4, os.cpu_count() or 1))


def prefetch_batches(
    items: Sequence[Item],
    load: Callable[[Item], Loaded],
    *,
    batch_size: int,
    threads: int | None = None,
    lookahead: int = 2,
) -> Iterator[list[Loaded]]:
    """Yield ``[load(item) for item in batch]`` for consecutive batches of ``items``, loaded ahead in threads.

    While the caller works on batch ``i``, batches ``i + 1 … i + lookahead`` are being loaded. The order of
    batches and of items within them is the input order. An exception raised by ``load`` is raised here
    when its batch is reached (earlier batches are yielded first, as in a plain loop); closing the
    iterator early cancels the loads not yet started.

    Args:
        items: What to load (paths, jobs).
        load: Loads one item; must be thread-safe (``load_image`` + transforms are).
        batch_size: Items per batch (the last batch may be smaller).
        threads: Loader threads; ``None`` = :func:`default_loader_threads`, ``0`` = load in the calling
            thread when the batch is needed (no overlap; the behaviour of a plain loop).
        lookahead: Batches loaded ahead of the one being consumed.

    Raises:
        ValueError: ``batch_size`` < 1 or ``lookahead`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if lookahead < 1:
        raise ValueError(f"lookahead must be >= 1, got {lookahead}")
    starts = range(0, len(items), batch_size)
    n_threads = default_loader_threads() if threads is None else threads
    if n_threads <= 0:
        for start in starts:
            yield [load(item) for item in items[start : start + batch_size]]
        return
    pool = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="texturebias-loader")
    pending: deque[list[Future[Loaded]]] = deque()
    upcoming = iter(starts)
    try:

        def submit_next() -> None:
            start = next(upcoming, None)
            if start is not None:
                pending.append([pool.submit(load, item) for item in items[start : start + batch_size]])

        for _ in range(lookahead + 1):
            submit_next()
        while pending:
            batch = pending.popleft()
            submit_next()
            yield [future.result() for future in batch]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def worker_init(worker_id: int = 0) -> None:
    """``worker_init_fn`` for every DataLoader of texturebias: a worker dies with the process that started it.

    PyTorch's workers only notice a dead parent when they next wait for work; a worker blocked on a full queue
    outlives a ``kill -9`` of the command as an orphan. On Linux the kernel sends the worker SIGTERM the moment
    its parent exits (``PR_SET_PDEATHSIG``); elsewhere this does nothing.
    """
    del worker_id
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # no prctl (an unusual libc): fall back to PyTorch's own watchdog
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(0)


_PR_SET_PDEATHSIG = 1
