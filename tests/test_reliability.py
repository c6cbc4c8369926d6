"""Reliability rules shared by every command: one-line errors with documented exit codes, no stale reuse."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from texturebias.cli import main
from texturebias.errors import TextureBiasError
from texturebias.utils.device import check_precision, resolve_device
from texturebias.utils.io import file_identity, folder_identity


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["classify", "--samples", "--device", "foo"], 1, "unknown device 'foo'"),
        (["shape-bias", "--model", "a", "--model", "b", "--checkpoint", "x.pt"], 2, "exactly one --model"),
        (["stylize", "c", "s", "o", "--workers", "-1"], 2, "expected an integer >= 0"),
        (["distort", "d", "o", "--distortion", "contrast", "--size", "-5"], 2, "expected an integer >= 0"),
    ],
)
def test_user_errors_are_one_line_with_the_documented_exit_code(
    argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse exits by itself
        rc = int(exc.code or 0)
    err = capsys.readouterr().err
    assert rc == code and message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_cuda_and_fp16_are_refused_up_front_on_a_cpu_machine() -> None:
    with pytest.raises(TextureBiasError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(TextureBiasError, match="fp16 needs a CUDA device"):
        check_precision(torch.device("cpu"), "fp16")
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_rewritten_checkpoint_has_another_identity(tmp_path: Path) -> None:
    """train overwrites checkpoint_best.pt in place: reuse must notice, whatever the path and mtime say."""
    ck = tmp_path / "checkpoint_best.pt"
    torch.save({"w": torch.zeros(3)}, ck)
    first = file_identity(ck)
    torch.save({"w": torch.ones(3)}, ck)
    assert file_identity(ck) != first and file_identity(ck)["size"] == first["size"]
    assert file_identity(None) is None


def test_folder_identity_changes_with_any_file(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"1")
    before = folder_identity(tmp_path)
    (tmp_path / "b.png").write_bytes(b"2")
    assert folder_identity(tmp_path) != before and folder_identity(tmp_path)["files"] == 2


def test_shape_bias_settings_carry_the_checkpoint_content(tmp_path: Path) -> None:
    from texturebias.evaluate.cue_conflict import _config

    ck = tmp_path / "best.pt"
    torch.save({"w": torch.zeros(2)}, ck)
    from texturebias.models import Preprocessing

    def config() -> dict[str, object]:  # as evaluate_shape_bias builds it: the file hashed at the start of the run
        return _config("resnet18", ck, file_identity(ck), None, "mean", "fp32", tmp_path, Preprocessing())

    first = config()
    torch.save({"w": torch.ones(2)}, ck)
    assert config() != first  # so reuse_trials recomputes instead of returning the old model's trials


def test_help_does_not_import_torch() -> None:
    """`texturebias --help` and every command's --help parse without loading torch (seconds of start-up).

    Nor scipy (~0.35 s): the parser lists the distortions' names, and every command builds the parser.
    """
    import subprocess
    import sys

    code = (
        "import sys\nfrom texturebias.cli import build_parser\nbuild_parser()\n"
        "heavy = [m for m in ('torch', 'torchvision', 'timm', 'scipy') if m in sys.modules]\nprint(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_analyze_does_not_import_torch(shared_data) -> None:
    """Reading trial CSVs needs no torch: `texturebias analyze` starts in under a second instead of ~3 s.

    The metrics seed NumPy through ``utils.seed.rng_for``, whose module imports torch only inside the functions
    that seed or save torch's generators.
    """
    import subprocess
    import sys

    folder = shared_data / "texture-vs-shape" / "raw-data" / "style-transfer-512-nomask-experiment"
    code = (
        "import sys\nfrom texturebias.cli import main\n"
        f"assert main(['analyze', {str(folder)!r}, '--json']) == 0\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stderr.strip().splitlines()[-1] == "False"
    assert '"humans"' in run.stdout
