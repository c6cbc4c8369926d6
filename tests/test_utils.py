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
