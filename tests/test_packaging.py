"""The built wheel installs and runs outside the checkout (py.typed included, compatible dependency ranges)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_dependencies_are_ranges_and_constraints_pin_them() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = {d.split(">")[0].split("=")[0].split("<")[0]: d for d in project["dependencies"]}
    assert deps["torch"] == "torch>=2.4,<3" and deps["torchvision"] == "torchvision>=0.19,<1"
    pins = (REPO / "constraints.txt").read_text().splitlines()
    assert "torch==2.14.1" in pins and "torchvision==0.29.1" in pins
    assert (REPO / "src" / "texturebias" / "py.typed").is_file()


@pytest.mark.slow
def test_wheel_installs_and_classifies_outside_the_checkout(tmp_path: Path) -> None:
    # Building the wheel is real; the fresh venv borrows this environment's site-packages (torch 2.14.1 and the
    # other pinned dependencies) through a .pth file instead of installing ~2 GB of CUDA wheels again. The
    # editable install of this checkout is not visible there (.pth files of an added path are not processed).
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(REPO)], check=True, cwd=tmp_path)  # fmt: skip
    wheel = next(dist.glob("texturebias-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "texturebias/py.typed" in names and "hubconf.py" not in names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())  # fmt: skip
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
                    "--disable-pip-version-check", str(wheel)], check=True)  # fmt: skip
    env = {**os.environ, "TEXTUREBIAS_NO_PROGRESS": "1", "PYTHONPATH": ""}
    where = subprocess.check_output([python, "-c", "import texturebias; print(texturebias.__file__)"], text=True,
                                    cwd=tmp_path, env=env)  # fmt: skip
    assert Path(where.strip()).is_relative_to(venv)
    run = subprocess.run([venv / "bin" / "texturebias", "classify", "--samples", "--top-k", "1", "--device", "cpu"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "cat" in run.stdout and "espresso" in run.stdout
