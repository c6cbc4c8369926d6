"""benchmarks/shape_bias.py runs as documented (docs/performance.md) and finds the same decisions in every variant."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_shape_bias_benchmark_runs_on_a_few_stimuli(shared_data: Path) -> None:
    env = {**os.environ, "TEXTUREBIAS_DATA": str(shared_data), "TEXTUREBIAS_NO_PROGRESS": "1"}
    cmd = [sys.executable, str(REPO / "benchmarks" / "shape_bias.py"), "--rounds", "1", "--limit", "6",
           "--batch-size", "4"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "6 cue-conflict stimuli" in out and "decisions identical in every run" in out
    assert "cpu flags: avx2=" in out
    for variant in ("forward alone", "sequential", "default", "overlap 2"):
        assert f"  {variant} " in out, variant


@pytest.mark.slow
def test_whole_command_times_a_baseline_checkout_in_the_same_rounds(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "texture-vs-shape" / "stimuli" / "style-transfer-preprocessed-512"
    stimuli = tmp_path / "cue-conflict"
    for cls in ("cat", "dog"):
        (stimuli / cls).mkdir(parents=True)
        for image in sorted((source / cls).glob("*.png"))[:2]:
            (stimuli / cls / image.name).symlink_to(image)
    env = {**os.environ, "TEXTUREBIAS_DATA": str(shared_data), "TEXTUREBIAS_NO_PROGRESS": "1"}
    cmd = [sys.executable, str(REPO / "benchmarks" / "shape_bias.py"), "--whole-command", "--rounds", "1",
           "--stimuli", str(stimuli), "--batch-size", "2", "--baseline-src", str(REPO)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "4 stimuli (1 sets)" in proc.stdout
    for row in ("forward alone", "shape-bias command", "baseline command"):
        assert f"round 1 {row}" in proc.stdout and f"  {row} " in proc.stdout, row
