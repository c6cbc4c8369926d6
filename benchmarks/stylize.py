"""Stylized-ImageNet builder vs the reference's one-image-at-a-time loop, end to end, in one process.

Baseline = what naoto0804/pytorch-AdaIN's ``test.py`` does per image (the code that built SIN): decode the
content (Resize(256) + CenterCrop(224)) and the style (centre square, 224), encode content, encode style,
AdaIN, decode, fp32, ``torchvision.utils.save_image`` to PNG. Ours = ``stylize_folder`` (loader workers,
batches, cached style statistics, channels_last, writer threads) in fp32 and, where the CPU has bf16
hardware (AMX / AVX512-BF16) or on CUDA, in bf16. Prints images/s, the ratio to the baseline, and the max
pixel difference of the saved PNGs to the baseline's.

Weights: the fixtures' deterministic detinit-v1 weights with the official layout (speed does not depend
on weight values; the official checkpoints cannot be downloaded here). Pass ``--vgg``/``--decoder`` to use
real ones.

Usage: ``.venv/bin/python benchmarks/stylize.py [--images 32] [--styles 4] [--batch-size 8] [--content-size 224x224]
[--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import print_machine  # noqa: E402  (benchmarks/ is on sys.path)
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def make_weights(d: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(REPO / "tests"))
    from detinit import detinit_state_dict

    fixtures = Path(os.environ.get("TEXTUREBIAS_FIXTURES", REPO.parent / "shared" / "fixtures")) / "adain"
    torch.save(detinit_state_dict(fixtures / "keys_vgg_normalised.json", 2.0), d / "vgg.pth")
    torch.save(detinit_state_dict(fixtures / "keys_decoder.json", 2.0), d / "decoder.pth")
    return d / "vgg.pth", d / "decoder.pth"


def make_images(d: Path, n_content: int, n_styles: int, size: tuple[int, int] = (500, 375)) -> tuple[Path, Path]:
    """Content JPEGs of ImageNet-like size (500x375, or ``size``) and style paintings (600x480), from real photos."""
    import skimage.data

    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]
    rng = np.random.default_rng(0)
    content, styles = d / "content", d / "styles"
    for i in range(n_content):
        img = Image.fromarray(photos[i % len(photos)]).resize(size, Image.BILINEAR)
        arr = np.asarray(img).astype(np.int16) + rng.integers(-12, 12, size=(size[1], size[0], 3))  # distinct images
        (content / f"n{i % 4:08d}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(
            content / f"n{i % 4:08d}/img_{i:04d}.JPEG", quality=90
        )
    styles.mkdir(parents=True, exist_ok=True)
    for i in range(n_styles):
        base = np.asarray(Image.fromarray(photos[(i + 1) % len(photos)]).resize((600, 480)))
        arr = np.roll(base, 37 * i, axis=1)[..., ::-1]
        Image.fromarray(np.ascontiguousarray(arr)).save(styles / f"painting_{i:03d}.jpg", quality=92)
    return content, styles


def baseline(
    content_dir: Path, styles_dir: Path, out: Path, vgg: Path, decoder: Path, manifest: dict[str, str]
) -> float:
    """The reference loop: one image at a time, fp32, style encoded every time, save_image to PNG."""
    from torchvision import transforms
    from torchvision.utils import save_image

    from texturebias.models.adain_nets import adain_decoder, vgg_normalised
    from texturebias.stylize.adain import adain

    enc = vgg_normalised()
    enc.load_state_dict(torch.load(vgg, weights_only=True))
    enc = torch.nn.Sequential(*list(enc)[:31]).eval()
    dec = adain_decoder()
    dec.load_state_dict(torch.load(decoder, weights_only=True))
    dec.eval()
    content_tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])

    def style_tf(img: Image.Image) -> torch.Tensor:
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        return transforms.ToTensor()(img.crop((left, top, left + side, top + side)).resize((224, 224), Image.LANCZOS))

    start = time.perf_counter()
    for rel, style_rel in manifest.items():
        c = content_tf(Image.open(content_dir / rel).convert("RGB")).unsqueeze(0)
        s = style_tf(Image.open(styles_dir / style_rel).convert("RGB")).unsqueeze(0)
        with torch.no_grad():
            t = adain(enc(c), enc(s))
            y = dec(t)
        target = out / (rel.rsplit(".", 1)[0] + ".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        save_image(y.clamp(0, 1), target)
    return time.perf_counter() - start


def max_pixel_diff(a: Path, b: Path) -> int:
    worst = 0
    for p in sorted(a.rglob("*.png")):
        q = b / p.relative_to(a)
        diff = np.abs(np.asarray(Image.open(p), dtype=int) - np.asarray(Image.open(q), dtype=int)).max()
        worst = max(worst, int(diff))
    return worst


def precision_error(vgg: Path, decoder: Path, content: Path, styles: Path, n: int) -> dict[str, float]:
    """bf16 (autocast + channels_last) vs fp32 on ``n`` SIN-prepared 224² pairs: float and uint8 errors."""
    import copy

    from texturebias.data.images import find_images
    from texturebias.stylize import AdaIN
    from texturebias.stylize.builder import load_content, load_style

    exact = AdaIN.from_checkpoints(vgg, decoder)
    fast = AdaIN(copy.deepcopy(exact.encoder), copy.deepcopy(exact.decoder), precision="bf16", channels_last=True)
    c = torch.stack([load_content(p) for p in find_images(content)[:n]]).float() / 255
    s = torch.stack([load_style(p) for p in find_images(styles)[:n]]).float() / 255
    s = torch.cat([s] * (n // len(s) + 1))[:n]
    with torch.no_grad():
        a, b = exact(c, s), fast(c, s)

    def q(x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0, 1).mul(255).add(0.5).to(torch.uint8).int()

    du8 = (q(a) - q(b)).abs()
    inside = ((a > 0) & (a < 1)).float().mean().item()
    return {
        "pairs": n,
        "fp32_output_fraction_inside_0_1": inside,
        "float_max_abs_error": (a - b).abs().max().item(),
        "float_mean_abs_error": (a - b).abs().mean().item(),
        "uint8_max_diff": int(du8.max()),
        "uint8_mean_diff": du8.float().mean().item(),
        "uint8_fraction_changed": (du8 > 0).float().mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--styles", type=int, default=4, help="style pool (SIN: 79k styles for 1.28M images)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the builder's, 0 on a CPU)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of ours and the baseline (medians)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--content-size",
        default="500x375",
        help="content JPEG size WxH (ImageNet-like 500x375; 224x224 makes the networks dominate)",
    )
    parser.add_argument("--vgg", type=Path)
    parser.add_argument("--decoder", type=Path)
    parser.add_argument(
        "--bf16",
        choices=("auto", "yes", "no"),
        default="auto",
        help="also time bf16 (auto: only with AMX/AVX512-BF16 or CUDA; emulated bf16 is ~9x slower)",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--precision-error",
        type=int,
        metavar="N",
        default=0,
        help="only measure bf16 vs fp32 errors on N pairs (no timing)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TEXTUREBIAS_NO_PROGRESS", "1")
    from texturebias.stylize.builder import stylize_folder

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        vgg, decoder = (args.vgg, args.decoder) if args.vgg and args.decoder else make_weights(d)
        w, h = (int(v) for v in args.content_size.lower().split("x"))
        content, styles = make_images(d, args.images, args.styles, (w, h))
        if args.precision_error:
            errors = precision_error(vgg, decoder, content, styles, args.precision_error)
            print(json.dumps(errors, indent=2))
            if args.json:
                args.json.write_text(json.dumps(errors, indent=2) + "\n")
            return
        common = dict(vgg=vgg, decoder=decoder, batch_size=args.batch_size, workers=args.workers, device="cpu")
        # Warm-up (oneDNN primitive creation) on a few images, then the builder run that fixes the style map.
        stylize_folder(content, styles, d / "warm", limit=2, **common)
        import csv
        import statistics

        ours_times, base_times = [], []
        for r in range(args.rounds):
            # Interleaved, so that a change in the machine's speed hits both sides alike.
            t0 = time.perf_counter()
            stylize_folder(content, styles, d / f"ours_fp32_{r}", precision="fp32", **common)
            ours_times.append(time.perf_counter() - t0)
            with open(d / f"ours_fp32_{r}" / "manifest.csv", newline="") as fh:
                manifest = {row["input"]: row["style"] for row in csv.DictReader(fh) if row["status"] == "done"}
            base_times.append(baseline(content, styles, d / f"baseline_{r}", vgg, decoder, manifest))
        ours_fp32, base = statistics.median(ours_times), statistics.median(base_times)
        n = len(manifest)
        results = {
            "images": n,
            "styles": args.styles,
            "threads": args.threads,
            "content_size": args.content_size,
            "rounds": args.rounds,
            "baseline_s": base_times,
            "ours_fp32_s": ours_times,
            "baseline_images_per_s": n / base,
            "ours_fp32_images_per_s": n / ours_fp32,
            "ratio_fp32": base / ours_fp32,
            "ratio_fp32_per_round": [b / o for b, o in zip(base_times, ours_times, strict=True)],
            "max_uint8_diff_fp32_vs_baseline": max_pixel_diff(d / "baseline_0", d / "ours_fp32_0"),
        }
        want_bf16 = args.bf16 == "yes" or (args.bf16 == "auto" and cpu_has_fast_bf16())
        if want_bf16:
            t0 = time.perf_counter()
            stylize_folder(content, styles, d / "ours_bf16", precision="bf16", **common)
            ours_bf16 = time.perf_counter() - t0
            results["ours_bf16_images_per_s"] = n / ours_bf16
            results["ratio_bf16"] = base / ours_bf16
            results["max_uint8_diff_bf16_vs_fp32"] = max_pixel_diff(d / "ours_fp32_0", d / "ours_bf16")
        else:
            results["bf16"] = "skipped: this CPU has no AMX/AVX512-BF16 (emulated bf16 is slower than fp32)"
    print_machine()
    print(f"baseline (reference loop, fp32): {results['baseline_images_per_s']:.2f} images/s")
    print(
        f"ours fp32:                       {results['ours_fp32_images_per_s']:.2f} images/s "
        f"-> {results['ratio_fp32']:.2f}x, max |diff| {results['max_uint8_diff_fp32_vs_baseline']} (uint8)"
    )
    if args.rounds > 1:
        print("  per round: " + ", ".join(f"{x:.2f}x" for x in results["ratio_fp32_per_round"]))
    if want_bf16:
        print(
            f"ours bf16:                       {results['ours_bf16_images_per_s']:.2f} images/s "
            f"-> {results['ratio_bf16']:.2f}x, max |diff| vs fp32 {results['max_uint8_diff_bf16_vs_fp32']} (uint8)"
        )
    else:
        print(results["bf16"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
