"""benchmarks/gpu.py, the prepared GPU check: it runs end to end on the CPU (``--quick``) and reports every row."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu_script() -> ModuleType:
    """The script as a module (``benchmarks/`` on ``sys.path`` for its ``_machine`` import, as when run)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("benchmarks_gpu", SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def _table(text: str) -> list[list[str]]:
    """Body rows of the results table (the one whose header starts with ``| section | work |``)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| section | work |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_write_report_replaces_only_the_generated_block(gpu_script: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "performance.md"
    path.write_text("# Performance\n\nhand-written numbers\n")
    for text in ("first run", "second run"):
        gpu_script.write_report(path, f"{gpu_script.BEGIN}\n{text}\n{gpu_script.END}")
    result = path.read_text()
    assert "hand-written numbers" in result and "second run" in result and "first run" not in result
    assert result.count(gpu_script.BEGIN) == 1


@pytest.mark.slow
def test_quick_cpu_run_reports_every_row(gpu_script: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "performance.md"
    out.write_text("# Performance\n\nhand-written numbers\n")
    env = {**os.environ, "TEXTUREBIAS_NO_PROGRESS": "1"}
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(out)]
    cmd += ["--json", str(tmp_path / "rows.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    text = out.read_text()
    assert "hand-written numbers" in text  # the rest of docs/performance.md survives a rerun
    assert "GPU rows: unmeasured" in text
    assert "| cpu flags | avx2=" in text and "| torch |" in text
    rows = _table(text)
    assert [(r[0], r[1]) for r in rows] == gpu_script.row_names(gpu_script.QUICK)
    for section, work, ours, _reference, _ratio, error, note in rows:
        if "fp16" in work:  # fp16 autocast needs CUDA
            assert ours == "not measured" and note == "not measured: fp16 needs CUDA", (work, ours, note)
        elif section == "smoke":
            assert ours.startswith("ok ("), (work, ours, note)
        elif section == "determinism":  # a CPU repeats its kernels exactly, with or without the flag
            assert ours == "identical" and error.startswith("0.00e+00"), (work, ours, error)
        else:
            assert ours.endswith(("img/s", "maps/s")), (work, ours, note)
            assert error != "—", work
    # CPU fp32 against CPU fp32: equal up to float rounding (channels_last picks other kernels), same PNGs.
    fp32 = {r[1]: r[5] for r in rows if "fp32" in r[1]}
    assert all(float(e.split()[0]) < 1e-3 for e in fp32.values()), fp32
    assert fp32[f"stylize_folder {gpu_script.QUICK.image}², fp32, batch {gpu_script.QUICK.e2e_batch}"].startswith("0 ")
    assert len(json.loads((tmp_path / "rows.json").read_text())) == len(rows)
