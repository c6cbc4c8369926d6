"""Seeding helpers: one call makes Python, NumPy and torch reproducible."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's RNGs (all devices)."""
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
