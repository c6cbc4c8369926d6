"""Batches of loaded inputs, prepared in threads: beside the model where cores are spare, otherwise between its calls.

Measuring commands (``shape-bias``, ``benchmark``, ``robustness``) decode PNG/JPEG stimuli and run a forward
pass. Decoding (PIL) and NumPy/torch preprocessing release the GIL, so threads can prepare the next batches
without the start-up cost and pickling of DataLoader worker processes. Results come back in input order and
each item is prepared by the same function as before, so every decision is the same bit for bit.

Overlap only pays where cores are spare. When torch's threads already occupy every core (2 torch threads on a
2-core CPU), a loader thread running beside the forward pass preempts one of oneDNN's threads, and the others
wait for it at every barrier: on a 2-core AVX2 EPYC the 1,280 cue-conflict stimuli took 38.7 s with two
overlapping loader threads, 27.8 s decoding in the loop, against 23.4 s for the forward alone
(``benchmarks/shape_bias.py``). Without spare cores each batch is therefore decoded by all cores at once, just
before the forward pass that needs it.
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
    """Overlapping loader threads for :func:`prefetch_batches`: the cores torch's threads leave free, at most 4.

    0 when torch uses every core (then batches are decoded in parallel between forward passes instead).
    Decoding 224² stimuli saturates at about 4 threads.
    """
    import torch  # the loader itself does not need torch; only the count of its compute threads

    spare = (os.cpu_count() or 1) - torch.get_num_threads()
    return max(0, min(4, spare))


def _torch_single_threaded() -> None:
    """Loader-thread initializer: torch ops in this thread (ToTensor, Normalize) run without an OpenMP team.

    Each Python thread that calls a parallel torch op gets its own OpenMP team of ``torch.get_num_threads()``
    threads; two loader threads then keep six threads busy on two cores. The setting is per thread: the
    forward pass in the calling thread keeps its threads.
    """
    import torch

    torch.set_num_threads(1)


def _parallel_between(items: Sequence[Item], load: Callable[[Item], Loaded], starts: range, batch_size: int,
                      threads: int) -> Iterator[list[Loaded]]:  # fmt: skip
    """Each batch loaded by ``threads`` threads when it is needed, never while the caller computes."""
    with ThreadPoolExecutor(threads, "texturebias-loader", initializer=_torch_single_threaded) as pool:
        for start in starts:
            # map() re-raises the first exception in input order, as the plain loop would.
            yield list(pool.map(load, items[start : start + batch_size]))


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
        threads: Overlapping loader threads; ``None`` = :func:`default_loader_threads`, and where that is 0
            (no spare core) each batch is loaded by one thread per core when it is needed; ``0`` = load in the
            calling thread when the batch is needed (no overlap; the behaviour of a plain loop).
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
    if threads is None and n_threads == 0 and (os.cpu_count() or 1) > 1 and len(items) > 1:
        yield from _parallel_between(items, load, starts, batch_size, os.cpu_count() or 1)
        return
    if n_threads <= 0:
        for start in starts:
            yield [load(item) for item in items[start : start + batch_size]]
        return
    pool = ThreadPoolExecutor(n_threads, "texturebias-loader", initializer=_torch_single_threaded)
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
