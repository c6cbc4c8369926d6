"""Atomic writes and process-independent seeds."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from texturebias.utils.io import atomic_open, write_json
from texturebias.utils.seed import stable_hash


def test_atomic_write_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("{half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_has_normal_permissions(tmp_path: Path) -> None:
    target = write_json(tmp_path / "summary.json", {"a": 1})
    mode = stat.S_IMODE(os.stat(target).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    assert target.read_text() == '{\n  "a": 1\n}\n'


def test_stable_hash_is_the_same_in_another_process() -> None:
    code = "from texturebias.utils.seed import stable_hash; print(stable_hash(0, 'a/b.JPEG', 1))"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert int(other.stdout) == stable_hash(0, "a/b.JPEG", 1)
    assert stable_hash(0, "a/b.JPEG", 1) != stable_hash(0, "a/b.JPEG", 2)


def test_resolve_precision_auto_picks_bf16_only_with_bf16_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    import texturebias.utils.device as device_module
    from texturebias.utils.device import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(device_module, "cpu_has_bf16_hardware", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(device_module, "cpu_has_bf16_hardware", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16"


def test_module_digest_ignores_the_memory_format() -> None:
    import torch

    from texturebias.utils.io import module_digest

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.Conv2d(3, 8, 3))  # N x C x 1 x 1 weights too
    plain = module_digest(net)
    assert module_digest(net.to(memory_format=torch.channels_last)) == plain
