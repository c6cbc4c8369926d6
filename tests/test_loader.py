"""texturebias.data.loader.prefetch_batches: order, batching, errors, early close."""

from __future__ import annotations

import threading
import time

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
