"""Seeding helpers: one call makes Python, NumPy and torch reproducible.

torch is imported inside the functions that need it: the metrics seed NumPy through :func:`rng_for`, so a
command that only reads trial CSVs (``texturebias analyze``) starts without torch (~2 s).
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from texturebias.utils.distributed import DistInfo


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's RNGs (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stable_hash(*parts: object) -> int:
    """A 64-bit integer hash of ``parts`` that is the same in every process and Python version.

    Python's ``hash`` is salted per process; work that must not depend on the process (which style goes
    with which content image, which tiles are shuffled) derives its seed from this instead.
    """
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def rng_for(*parts: object) -> np.random.Generator:
    """A NumPy Generator seeded by :func:`stable_hash` of ``parts``."""
    return np.random.default_rng(stable_hash(*parts))


def rng_state() -> dict[str, Any]:
    """Every RNG state of this process (torch, CUDA, Python, NumPy), in a form ``weights_only`` loading accepts."""
    import torch

    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        # Plain lists: the checkpoint must load with torch.load(weights_only=True).
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (exact resume)."""
    import torch

    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def gather_rng_states(info: DistInfo) -> list[dict[str, Any]]:
    """Every rank's :func:`rng_state` (a collective call under torchrun: all ranks must take part)."""
    import torch
    import torch.distributed as dist

    own = rng_state()
    if not info.distributed:
        return [own]
    gathered: list[Any] = [None] * info.world_size
    cpu_own = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in own.items()}
    dist.all_gather_object(gathered, cpu_own)
    return gathered
