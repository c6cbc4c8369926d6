"""The fixtures' deterministic weight recipe "detinit-v1" (shared/fixtures/README.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch


def detinit_state_dict(keys_json: str | Path, gain: float) -> dict[str, torch.Tensor]:
    """Rebuild the fixture weights from a ``keys_*.json`` list of ``[name, shape]``."""
    keys = json.loads(Path(keys_json).read_text())
    sd: dict[str, torch.Tensor] = {}
    for i, (name, shape) in enumerate(keys):
        g = torch.Generator().manual_seed(1000 + i)
        shape = tuple(shape)
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.zeros(shape, dtype=torch.int64)
        elif name.endswith("running_mean"):
            sd[name] = torch.randn(shape, generator=g) * 0.1
        elif name.endswith("running_var"):
            sd[name] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 1 and name.endswith("weight"):
            sd[name] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 1:
            sd[name] = torch.randn(shape, generator=g) * 0.05
        else:
            fan_in = math.prod(shape) // shape[0]
            sd[name] = torch.randn(shape, generator=g) * math.sqrt(gain / fan_in)
    return sd
