"""The Stylized-ImageNet builder on odd folders: records, seeded style choice, batch/worker/rank invariance, resume.

Weights are the fixtures' deterministic detinit-v1 weights with the official key layout (the official
AdaIN checkpoints cannot be downloaded here); images are tiny (32 px) to keep the test fast.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from oddimages import CONVERTIBLE, UNREADABLE, make_odd_folder, make_photo, tree_bytes
from texturebias.errors import DataError
from texturebias.stylize import AdaIN
from texturebias.stylize.builder import load_style, stylize_folder
from texturebias.utils.distributed import DistInfo
from texturebias.utils.seed import stable_hash

SMALL = {"content_size": 32, "crop": 32, "style_size": 32}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, adain_weight_files: tuple[Path, Path]) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sin")
    make_odd_folder(d / "content")
    rng = np.random.default_rng(7)
    styles = d / "styles"
    (styles / "sub").mkdir(parents=True)
    for i, (h, w) in enumerate([(40, 60), (50, 50), (36, 33 + 3), (64, 40)]):
        Image.fromarray(make_photo(rng, h, w)).save(styles / ("sub" if i % 2 else "") / f"paint{i}.JPG")
    Image.fromarray(make_photo(rng, 20, 50)).save(styles / "small.png")  # a side < 32: dropped, as SIN does
    (styles / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    vgg, decoder = adain_weight_files
    return {"root": d, "vgg": vgg, "decoder": decoder, "content": d / "content", "styles": styles}


@pytest.fixture(scope="module")
def model(setup: dict[str, Path]) -> AdaIN:
    return AdaIN.from_checkpoints(setup["vgg"], setup["decoder"])


@pytest.fixture(scope="module")
def reference_tree(setup: dict[str, Path], model: AdaIN) -> Path:
    out = setup["root"] / "ref"
    stylize_folder(setup["content"], setup["styles"], out, model=model, batch_size=4, workers=0, **SMALL)
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_outputs_records_and_style_choice(setup: dict[str, Path], reference_tree: Path, model: AdaIN) -> None:
    out = reference_tree
    failed = {r["input"]: r["reason"] for r in read_csv(out / "failed.csv")}
    assert set(failed) == set(UNREADABLE)
    for rel, word in UNREADABLE.items():
        assert word in failed[rel]
    styles = read_csv(out / "styles.csv")
    used = [r["style"] for r in styles if r["status"] == "used"]
    assert used == ["paint0.JPG", "paint2.JPG", "sub/paint1.JPG", "sub/paint3.JPG"]  # sorted, .JPG found
    dropped = {r["style"]: r["reason"] for r in styles if r["status"] == "dropped"}
    assert dropped == {"broken.jpg": "not a readable image file", "small.png": "smaller than 32 px (50x20)"}
    rows = [r for r in read_csv(out / "manifest.csv") if r["status"] == "done"]
    assert len(rows) == 4 + len(CONVERTIBLE)
    for row in rows:
        # The style is a pure function of (seed, content relative path, k): uniform over the usable styles.
        expected = np.random.default_rng(stable_hash(0, row["input"], "style", 0, 0) >> 1).integers(4)
        assert row["style"] == used[expected] and row["style_index"] == str(expected) and row["alpha"] == "1.0"
        img = Image.open(out / row["output"])
        assert img.mode == "RGB" and img.size == (32, 32)
    assert (out / "cls_b/upper.png").exists() and (out / "cls_b/deep16.png").exists()
    # The saved pixels are the model's output on the SIN-prepared inputs, rounded like torchvision's save_image.
    row = next(r for r in rows if r["input"] == "cls_a/img0.png")
    from texturebias.stylize.builder import load_content

    content = load_content(setup["content"] / "cls_a/img0.png", 32, 32).unsqueeze(0)
    style = load_style(setup["styles"] / row["style"], 32).unsqueeze(0)
    with torch.no_grad():
        expected_img = model(content.float() / 255, style.float() / 255)[0]
    expected_u8 = expected_img.clamp(0, 1).mul(255).add(0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    got = np.asarray(Image.open(out / "cls_a/img0.png"))
    assert np.abs(got.astype(int) - expected_u8.astype(int)).max() <= 1


def test_independent_of_batch_size_and_workers(setup: dict[str, Path], reference_tree: Path, model: AdaIN) -> None:
    out = setup["root"] / "b1w2"
    stylize_folder(setup["content"], setup["styles"], out, model=model, batch_size=1, workers=1, **SMALL)
    assert tree_bytes(out) == tree_bytes(reference_tree)


@pytest.mark.parametrize("micro_batch", [1, 3, None])
def test_micro_batches_give_the_same_bytes(
    setup: dict[str, Path], reference_tree: Path, model: AdaIN, micro_batch: int | None
) -> None:
    # The reference tree ran whole batches of 4 (micro_batch=0 would be the same); the CPU default (None) and
    # explicit sizes split them into network calls of 1 (run as 2), 3, or by activation size.
    out = setup["root"] / f"micro{micro_batch}"
    stylize_folder(setup["content"], setup["styles"], out, model=model, batch_size=4, workers=0,
                   micro_batch=micro_batch, **SMALL)  # fmt: skip
    assert tree_bytes(out) == tree_bytes(reference_tree)


def test_micro_batch_chunks_by_activation_size() -> None:
    from texturebias.stylize.builder import _Stylizer

    s = _Stylizer(model=None, bank=None, alpha=1.0, styles_per_image=1, micro_batch=None)  # type: ignore[arg-type]
    assert s._micro(torch.zeros(8, 3, 224, 224)) == 2  # 12.8 MB of relu1_1 per image: two per call
    assert s._micro(torch.zeros(8, 3, 32, 32)) == 128  # small images: the whole batch
    assert s._micro(torch.zeros(8, 3, 1024, 1024)) == 2  # never one (a batch of one runs as two anyway)


def test_two_ranks_union_equals_single_process(setup: dict[str, Path], reference_tree: Path, model: AdaIN) -> None:
    out = setup["root"] / "ranks"
    for rank in (1, 0):
        stylize_folder(setup["content"], setup["styles"], out, model=model, batch_size=3, workers=0,
                       dist=DistInfo(rank, 2, rank), **SMALL)  # fmt: skip
    assert tree_bytes(out) == tree_bytes(reference_tree)


def test_rerun_with_other_settings_is_refused(setup: dict[str, Path], reference_tree: Path, model: AdaIN) -> None:
    with pytest.raises(DataError, match="alpha: 1.0 -> 0.5"):
        stylize_folder(setup["content"], setup["styles"], reference_tree, model=model, alpha=0.5, **SMALL)


def test_several_styles_alpha_and_tar_shards(setup: dict[str, Path], model: AdaIN) -> None:
    out = setup["root"] / "multi"
    stylize_folder(setup["content"], setup["styles"], out, model=model, styles_per_image=2, alpha=0.5,
                   shard_size=8, limit=9, **SMALL)  # fmt: skip
    rows = [r for r in read_csv(out / "manifest.csv") if r["status"] == "done"]
    assert {r["output_name"] for r in rows} == {"s0", "s1"} and {r["alpha"] for r in rows} == {"0.5"}
    names = tarfile.open(out / "shard-000000.tar").getnames()
    assert "cls_a/cmyk_s0.png" not in names and "cls_a/cmyk.s0.png" in names and "cls_a/cmyk.json" in names
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000000.tar", "shard-000001.tar"]


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(min(2, torch.get_num_threads()))  # as conftest: float results depend on threads
    from texturebias.stylize.builder import stylize_folder
    stylize_folder(sys.argv[1], sys.argv[2], sys.argv[3], vgg=sys.argv[4], decoder=sys.argv[5], batch_size=2,
                   workers=1, content_size=32, crop=32, style_size=32, device="cpu")
    """
)


@pytest.mark.slow
def test_resume_after_kill_is_byte_identical(setup: dict[str, Path], model: AdaIN, tmp_path: Path) -> None:
    content = tmp_path / "content"
    rng = np.random.default_rng(2)
    for i in range(12):
        p = content / f"c{i % 2}" / f"im{i:02d}.JPEG"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_photo(rng, 36, 40)).save(p, quality=90)
    stylize_folder(content, setup["styles"], tmp_path / "ref", model=model, batch_size=5, **SMALL)
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT)
    out = tmp_path / "out"
    args = [sys.executable, str(script), str(content), str(setup["styles"]), str(out), str(setup["vgg"]),
            str(setup["decoder"])]  # fmt: skip
    proc = subprocess.Popen(args, env={**os.environ, "TEXTUREBIAS_NO_PROGRESS": "1"})
    deadline = time.monotonic() + 150
    while len(list(out.rglob("im*.png"))) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < len(list(out.rglob("im*.png"))) < 12
    stylize_folder(content, setup["styles"], out, model=model, batch_size=3, workers=0, **SMALL)
    assert tree_bytes(out) == tree_bytes(tmp_path / "ref")


def test_cli(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from texturebias.cli import main

    out = setup["root"] / "cli"
    args = ["stylize", str(setup["content"]), str(setup["styles"]), str(out), "--vgg", str(setup["vgg"]),
            "--decoder", str(setup["decoder"]), "--content-size", "32", "--crop", "32", "--style-size", "32",
            "--limit", "5", "--format", "jpg", "--workers", "0", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 processed here, 0 already done, 4 failed of 5 inputs" in printed and "bad/empty.png" in printed
    assert Image.open(out / "cls_a/cmyk.jpg").format == "JPEG"
    assert main(args) == 0 and "0 processed here, 1 already done" in capsys.readouterr().out
    assert main(["stylize", str(setup["root"] / "missing"), str(setup["styles"]), str(out)]) == 1
    assert "folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["stylize", "a", "b", "c", "--alpha", "1.5"])
    assert exc.value.code == 2
    assert main(["train-decoder", "--content", str(setup["root"] / "missing"), "--styles", "x", "--out", "y"]) == 1


def test_unreadable_style_is_redrawn_deterministically(tmp_path: Path) -> None:
    from texturebias.data.folder_job import JobItem
    from texturebias.stylize.builder import StyleBank, _ItemLoader, pick_style

    rng = np.random.default_rng(0)
    good = tmp_path / "good.png"
    Image.fromarray(make_photo(rng, 40, 40)).save(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.png"
    bad.write_bytes(data[: len(data) // 3])  # the header is fine, the pixels are cut off
    content = tmp_path / "c.png"
    Image.fromarray(make_photo(rng, 40, 40)).save(content)
    bank = StyleBank(tmp_path, (bad, good))
    # Find an item whose first draw is the truncated style.
    item = next(it for i in range(50) if pick_style(it := JobItem(0, content, f"x{i}.png"), 0, 2) == 0)
    loaded = _ItemLoader(bank, 1, 32, 32, 32)(item)
    (idx, style, problems) = loaded["styles"][0]
    first_good = next(a for a in range(10) if pick_style(item, 0, 2, a) == 1)
    assert idx == 1 and style.shape == (3, 32, 32) and len(problems) == first_good
    assert "bad.png" in problems[0] and "truncated" in problems[0]


def test_cli_precision_auto(
    setup: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import texturebias.utils.device as device_module
    from texturebias.cli import main

    monkeypatch.setattr(device_module, "cpu_has_bf16_hardware", lambda: False)  # as on AVX2-only CPUs
    out = setup["root"] / "cli-auto"
    args = ["stylize", str(setup["content"]), str(setup["styles"]), str(out), "--vgg", str(setup["vgg"]),
            "--decoder", str(setup["decoder"]), "--limit", "1", "--workers", "0", "--device", "cpu",
            "--precision", "auto", *(f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items())]  # fmt: skip
    assert main(args) == 0
    assert "--precision auto: fp32 (no bf16 hardware" in capsys.readouterr().out
