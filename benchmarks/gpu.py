"""The prepared GPU check: throughput, correctness vs CPU fp32, and torchrun smoke runs, written to a report.

Run it as is on a GPU machine, from the repository root, with torch and the package's dependencies
installed (one GPU, <= 8 minutes: ``--budget-s`` bounds the measured part, rows that do not fit are marked
"not measured: time budget", and the smoke runs have a 2-minute timeout)::

    python benchmarks/gpu.py                         # --device cuda, writes docs/performance.md
    python benchmarks/gpu.py --device cpu --quick --out /tmp/perf.md   # CPU smoke (the test suite runs this)

What it measures, each against a baseline run on the same device in the same process:

- **Stylization, in memory** (fp32, bf16, fp16; several batch sizes): :class:`~texturebias.stylize.AdaIN`
  with cached style statistics, uint8 input, channels_last — against the pytorch-AdaIN loop (one image at a
  time, fp32, style encoded per image).
- **Stylization, end to end** (decode, resize, stylize, PNG encode, write): ``stylize_folder`` against the
  same reference loop with its decoding and ``save_image``; the error column is the largest uint8 pixel
  difference to the CPU fp32 ``stylize_folder`` output on the first images.
- **BagNet heatmaps**: ``class_evidence`` maps/s (fp32, bf16).
- **Training**: ResNet-50 images/s through the toolkit's ``Trainer`` vs a plain PyTorch loop with the same
  precision (AMP) and memory format (channels_last for bf16/fp16); batches already on the device.
- **Determinism**: two training runs of the same seeded start on the same batches (the ``train`` workload,
  fp32, a few steps), with PyTorch's default kernels and under ``train --deterministic``
  (:func:`~texturebias.utils.device.deterministic_algorithms`); the largest weight difference between the runs.
- **Detection training**: Faster R-CNN (ResNet-50 + FPN, REFERENCE §6) images/s of one epoch of
  ``train_detector`` (fp32, and fp16 with ``amp``) vs torchvision's reference loop (``model(images, targets)``,
  summed losses, SGD step) with the same data loader and precision, on generated VOC-layout scenes.
- **Smoke runs**: ``torchrun --nproc_per_node 1 -m texturebias train`` and ``... stylize`` on tiny generated
  data, and a process group (NCCL on CUDA, gloo on CPU) with an all-reduce and one DDP step. ``texturebias``
  itself only creates a process group for more than one process, so the last row is what exercises NCCL.

Correctness: every device output is compared with the CPU fp32 output of the same weights and inputs
(max abs error; the scale of the reference is given beside it). On CUDA, PyTorch's defaults apply
(cuDNN convolutions may use TF32; the report states the setting).

Weights are deterministic seeded initialisations (no downloads): speed does not depend on weight values.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

os.environ.setdefault("TEXTUREBIAS_NO_PROGRESS", "1")

from _machine import describe_machine, print_machine  # noqa: E402  (benchmarks/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("texturebias") is None:  # a fresh checkout without `pip install -e .`
    sys.path.insert(0, str(REPO / "src"))
DEFAULT_OUT = REPO / "docs" / "performance.md"
BEGIN = "<!-- benchmarks/gpu.py: begin (generated; rerun the script to update) -->"
END = "<!-- benchmarks/gpu.py: end -->"
NOT_MEASURED = "not measured"
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Sizes:
    """Workload sizes: the full GPU run or the CPU ``--quick`` smoke run."""

    image: int
    stylize_batches: tuple[int, ...]
    stylize_images: int
    reference_images: int
    e2e_images: int
    e2e_batch: int
    e2e_check: int
    heat_model: str
    heat_size: int
    heat_batches: tuple[int, ...]
    train_model: str
    train_size: int
    train_batch: int
    train_steps: int
    detect_backbone: str
    detect_size: int
    detect_images: int
    detect_batch: int
    rounds: int
    warmup: bool = True


FULL = Sizes(
    image=224, stylize_batches=(8, 32, 128), stylize_images=512, reference_images=64, e2e_images=256, e2e_batch=32,
    e2e_check=8, heat_model="bagnet33", heat_size=224, heat_batches=(1, 8), train_model="resnet50", train_size=224,
    train_batch=64, train_steps=10, detect_backbone="resnet50", detect_size=512, detect_images=64, detect_batch=8,
    rounds=3, warmup=True,
)  # fmt: skip
QUICK = Sizes(
    image=32, stylize_batches=(2,), stylize_images=4, reference_images=2, e2e_images=4, e2e_batch=2, e2e_check=2,
    heat_model="bagnet9", heat_size=16, heat_batches=(1,), train_model="resnet18", train_size=32, train_batch=2,
    train_steps=1, detect_backbone="demo_cnn", detect_size=64, detect_images=4, detect_batch=2, rounds=1,
    warmup=False,
)  # fmt: skip


@dataclass
class Row:
    """One line of the report table."""

    section: str
    work: str
    ours: str = NOT_MEASURED
    reference: str = "—"
    ratio: str = "—"
    error: str = "—"
    note: str = ""


def row_names(sizes: Sizes) -> list[tuple[str, str]]:
    """Every (section, work) row of the table, in order, whatever was measured."""
    rows = [("stylize (in memory)", f"AdaIN {sizes.image}², {p}, batch {b}") for p in PRECISIONS
            for b in sizes.stylize_batches]  # fmt: skip
    rows += [
        ("stylize (end to end)", f"stylize_folder {sizes.image}², {p}, batch {sizes.e2e_batch}") for p in PRECISIONS
    ]
    rows += [("heatmap", f"{sizes.heat_model} class_evidence {sizes.heat_size}², {p}, batch {b}")
             for p in ("fp32", "bf16") for b in sizes.heat_batches]  # fmt: skip
    rows += [("train", f"{sizes.train_model} {sizes.train_size}², {p}{'' if p == 'fp32' else ' + channels_last'}, "
              f"batch {sizes.train_batch}") for p in PRECISIONS]  # fmt: skip
    rows += [("determinism", f"{sizes.train_model} {sizes.train_size}², fp32, two seeded runs, {k} kernels")
             for k in ("default", "deterministic")]  # fmt: skip
    rows += [("detect", f"Faster R-CNN {sizes.detect_backbone} {sizes.detect_size}², {p}, batch {sizes.detect_batch}")
             for p in ("fp32", "fp16")]  # fmt: skip
    rows += [("smoke", "torchrun --nproc_per_node 1 -m texturebias train"),
             ("smoke", "torchrun --nproc_per_node 1 -m texturebias stylize"),
             ("smoke", "torchrun --nproc_per_node 1: process group + all_reduce + DDP step")]  # fmt: skip
    return rows


class Report:
    """The table being filled, with the time budget."""

    def __init__(self, sizes: Sizes, budget_s: float) -> None:
        self.rows = {(s, w): Row(s, w) for s, w in row_names(sizes)}
        self.deadline = time.perf_counter() + budget_s
        self.failed = False

    def row(self, section: str, work: str) -> Row:
        return self.rows[(section, work)]

    def time_left(self) -> float:
        return self.deadline - time.perf_counter()

    def skip(self, section: str, why: str) -> None:
        for r in self.rows.values():
            if r.section == section and r.ours == NOT_MEASURED and not r.note:
                r.note = why

    def fail(self, section: str, exc: BaseException) -> None:
        self.failed = True
        traceback.print_exc()
        for r in self.rows.values():
            if r.section == section and r.ours == NOT_MEASURED and not r.note:
                r.ours, r.note = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:160]


# -- helpers -----------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, rounds: int, warmup: bool = True) -> float:
    """Median wall time of ``fn`` over ``rounds`` runs, after one warm-up run (kernel selection, allocator)."""
    if warmup:
        fn()
        sync(device)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def max_abs_error(got: torch.Tensor, want: torch.Tensor) -> str:
    err = (got.detach().float().cpu() - want.detach().float().cpu()).abs().max().item()
    scale = want.detach().float().abs().max().item()
    return f"{err:.2e} (ref max {scale:.2g})"


def supported(device: torch.device, precision: str) -> str | None:
    """Why ``precision`` cannot run on ``device`` (``None`` when it can)."""
    if precision == "fp16" and device.type != "cuda":
        return "not measured: fp16 needs CUDA"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "not measured: this GPU has no bf16"
    return None


def seeded_adain_weights(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Official-layout VGG/decoder state dicts with a seeded variance-preserving init (He normal).

    PyTorch's default init shrinks activations layer by layer (fp16 would underflow in a deep VGG); He
    init keeps them at the scale trained weights have, so the precision errors are representative.
    """
    from texturebias.models.adain_nets import adain_decoder, vgg_normalised

    torch.manual_seed(seed)
    paths = []
    for name, net in (("vgg.pth", vgg_normalised("max")), ("decoder.pth", adain_decoder())):
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.uniform_(m.bias, -0.05, 0.05)
        torch.save(net.state_dict(), folder / name)
        paths.append(folder / name)
    return paths[0], paths[1]


def make_images(folder: Path, n_content: int, n_styles: int, size: int, classes: int = 2) -> tuple[Path, Path]:
    """Seeded content JPEGs (an ImageFolder tree, 4:3, larger than ``size``) and square style PNGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    content, styles = folder / "content", folder / "styles"
    h, w = size * 5 // 4, size * 5 // 3
    ramp = np.linspace(0, 255, w)[None, :, None]
    for i in range(n_content):
        noise = rng.integers(0, 64, size=(h, w, 3))
        arr = np.clip(ramp * (0.3 + 0.2 * (i % 3)) + noise, 0, 255).astype(np.uint8)
        (content / f"class{i % classes}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(content / f"class{i % classes}" / f"img_{i:04d}.jpg", quality=90)
    styles.mkdir(parents=True, exist_ok=True)
    for i in range(n_styles):
        arr = rng.integers(0, 256, size=(size + 16, size + 16, 3), dtype=np.uint8)
        Image.fromarray(arr).save(styles / f"painting_{i:03d}.png")
    return content, styles


# -- stylization ---------------------------------------------------------------------------------------------


def reference_networks(vgg: Path, decoder: Path, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """The pytorch-AdaIN ``test.py`` networks: VGG truncated after relu4_1, decoder, fp32, contiguous."""
    from texturebias.models.adain_nets import adain_decoder, vgg_normalised

    enc = vgg_normalised("max")
    enc.load_state_dict(torch.load(vgg, weights_only=True))
    dec = adain_decoder()
    dec.load_state_dict(torch.load(decoder, weights_only=True))
    return nn.Sequential(*list(enc)[:31]).to(device).eval(), dec.to(device).eval()


def bench_stylize_in_memory(report: Report, sizes: Sizes, device: torch.device, vgg: Path, decoder: Path) -> None:
    from texturebias.stylize import AdaIN
    from texturebias.stylize.adain import adain

    section = "stylize (in memory)"
    g = torch.Generator().manual_seed(0)
    s = sizes.image
    content = torch.randint(0, 256, (max(sizes.stylize_batches), 3, s, s), generator=g, dtype=torch.uint8)
    styles = torch.randint(0, 256, (4, 3, s, s), generator=g, dtype=torch.uint8)
    check_c, check_s = content[:2], styles[:2]

    # Reference: one image at a time, fp32, the style encoded every time (what built Stylized-ImageNet).
    enc, dec = reference_networks(vgg, decoder, device)
    ref_c = content.to(device).float() / 255
    ref_s = styles.to(device).float() / 255

    @torch.no_grad()
    def reference() -> None:
        for i in range(sizes.reference_images):
            c, st = ref_c[i % len(ref_c)][None], ref_s[i % len(ref_s)][None]
            dec(adain(enc(c), enc(st)))

    ref_rate = sizes.reference_images / median_seconds(reference, device, sizes.rounds, sizes.warmup)
    cpu = AdaIN.from_checkpoints(vgg, decoder, device="cpu")
    with torch.no_grad():
        want = cpu(check_c, check_s)
    for precision in PRECISIONS:
        why = supported(device, precision)
        model = None
        if why is None:
            model = AdaIN.from_checkpoints(vgg, decoder, device=device, precision=precision, channels_last=True)  # type: ignore[arg-type]
            with torch.no_grad():
                error = max_abs_error(model(check_c, check_s), want)
                stats = model.style_stats(styles)
        for b in sizes.stylize_batches:
            row = report.row(section, f"AdaIN {s}², {precision}, batch {b}")
            row.reference = f"{ref_rate:.1f} img/s"
            if model is None:
                row.note = why or ""
                continue
            if report.time_left() < 0:
                row.note = "not measured: time budget"
                continue
            x = content[:b].to(device)
            idx = torch.arange(b) % len(stats)
            batch_stats = stats[idx]
            n_batches = max(1, sizes.stylize_images // b)

            @torch.no_grad()
            def ours(
                model: AdaIN = model, x: torch.Tensor = x, stats: object = batch_stats, n: int = n_batches
            ) -> None:
                for _ in range(n):
                    model(x, stats)  # type: ignore[arg-type]

            rate = n_batches * b / median_seconds(ours, device, sizes.rounds, sizes.warmup)
            row.ours, row.ratio, row.error = f"{rate:.1f} img/s", f"{rate / ref_rate:.2f}×", error
            row.note = "cached style stats, uint8 in, channels_last; reference: batch 1, fp32"
        if device.type == "cuda":
            torch.cuda.empty_cache()


def reference_folder_loop(content: Path, styles_dir: Path, out: Path, manifest: dict[str, str], vgg: Path,
                          decoder: Path, device: torch.device, size: int) -> None:  # fmt: skip
    """pytorch-AdaIN ``test.py`` per image: decode, Resize+CenterCrop, encode both, AdaIN, decode, save_image."""
    from PIL import Image
    from torchvision import transforms
    from torchvision.utils import save_image

    from texturebias.stylize.adain import adain

    enc, dec = reference_networks(vgg, decoder, device)
    content_tf = transforms.Compose(
        [transforms.Resize(size * 8 // 7), transforms.CenterCrop(size), transforms.ToTensor()]
    )
    style_tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()])
    with torch.no_grad():
        for rel, style_rel in manifest.items():
            c = content_tf(Image.open(content / rel).convert("RGB")).unsqueeze(0).to(device)
            s = style_tf(Image.open(styles_dir / style_rel).convert("RGB")).unsqueeze(0).to(device)
            y = dec(adain(enc(c), enc(s)))
            target = out / (rel.rsplit(".", 1)[0] + ".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            save_image(y.clamp(0, 1), target)


def max_png_difference(a: Path, b: Path) -> tuple[int, int]:
    """Largest uint8 difference over the PNGs of ``a`` that ``b`` also has, and how many were compared."""
    from PIL import Image

    worst, n = 0, 0
    for p in sorted(a.rglob("*.png")):
        q = b / p.relative_to(a)
        if q.is_file():
            x = np.asarray(Image.open(p), dtype=int)
            y = np.asarray(Image.open(q), dtype=int)
            worst, n = max(worst, int(np.abs(x - y).max())), n + 1
    return worst, n


def bench_stylize_end_to_end(report: Report, sizes: Sizes, device: torch.device, vgg: Path, decoder: Path,
                             tmp: Path) -> None:  # fmt: skip
    import csv

    from texturebias.stylize.builder import stylize_folder

    section = "stylize (end to end)"
    s = sizes.image
    content, styles = make_images(tmp / "e2e", sizes.e2e_images, 4, s)
    common = dict(vgg=vgg, decoder=decoder, content_size=s * 8 // 7, crop=s, style_size=s, min_style_size=s,
                  batch_size=sizes.e2e_batch, workers=min(4, os.cpu_count() or 1))  # fmt: skip
    stylize_folder(content, styles, tmp / "e2e-cpu", device="cpu", limit=sizes.e2e_check, **common)  # type: ignore[arg-type]
    stylize_folder(content, styles, tmp / "e2e-warm", device=device, limit=sizes.e2e_batch, **common)  # type: ignore[arg-type]
    rates: dict[str, float] = {}
    for precision in PRECISIONS:
        row = report.row(section, f"stylize_folder {s}², {precision}, batch {sizes.e2e_batch}")
        why = supported(device, precision)
        if why is not None or report.time_left() < 0:
            row.note = why or "not measured: time budget"
            continue
        out = tmp / f"e2e-{precision}"
        t0 = time.perf_counter()
        stylize_folder(content, styles, out, device=device, precision=precision, **common)  # type: ignore[arg-type]
        sync(device)
        rates[precision] = sizes.e2e_images / (time.perf_counter() - t0)
        diff, n = max_png_difference(tmp / "e2e-cpu", out)
        row.ours, row.error = f"{rates[precision]:.1f} img/s", f"{diff} (uint8, {n} PNGs)"
        row.note = f"{common['workers']} loader workers; one run (includes startup)"
    if not rates:
        return
    with open(tmp / "e2e-fp32" / "manifest.csv", newline="") as fh:
        manifest = {r["input"]: r["style"] for r in csv.DictReader(fh) if r["status"] == "done"}
    first = dict(list(manifest.items())[: sizes.e2e_batch])
    reference_folder_loop(content, styles, tmp / "ref-warm", first, vgg, decoder, device, s)
    t0 = time.perf_counter()
    reference_folder_loop(content, styles, tmp / "ref", manifest, vgg, decoder, device, s)
    sync(device)
    ref_rate = len(manifest) / (time.perf_counter() - t0)
    for precision, rate in rates.items():
        row = report.row(section, f"stylize_folder {s}², {precision}, batch {sizes.e2e_batch}")
        row.reference, row.ratio = f"{ref_rate:.1f} img/s", f"{rate / ref_rate:.2f}×"


# -- heatmaps -------------------------------------------------------------------------------------------------


def bench_heatmap(report: Report, sizes: Sizes, device: torch.device) -> None:
    from texturebias.explain.evidence import DensePlan, class_evidence
    from texturebias.models import create_model

    section = "heatmap"
    torch.manual_seed(0)
    model = create_model(sizes.heat_model).eval()
    s = sizes.heat_size
    x = torch.randn(max(sizes.heat_batches), 3, s, s, generator=torch.Generator().manual_seed(0))
    want = class_evidence(DensePlan(model, "fp32"), x[:1], 7)
    model = model.to(device)
    for precision in ("fp32", "bf16"):
        why = supported(device, precision)
        plan = DensePlan(model, precision) if why is None else None  # type: ignore[arg-type]
        error = max_abs_error(class_evidence(plan, x[:1].to(device), 7), want) if plan is not None else "—"
        for b in sizes.heat_batches:
            row = report.row(section, f"{sizes.heat_model} class_evidence {s}², {precision}, batch {b}")
            if plan is None or report.time_left() < 0:
                row.note = why or "not measured: time budget"
                continue
            xb = x[:b].to(device)
            seconds = median_seconds(
                lambda xb=xb, plan=plan: class_evidence(plan, xb, 7), device, sizes.rounds, sizes.warmup
            )
            row.ours, row.error = f"{b / seconds:.2f} maps/s", error
            row.note = "exact dense pass (no reference loop timed here; see benchmarks/heatmap.py)"


# -- training -------------------------------------------------------------------------------------------------


def bench_train(report: Report, sizes: Sizes, device: torch.device) -> None:
    from texturebias.models import create_model
    from texturebias.train.loop import Trainer

    section = "train"
    classes = 1000
    g = torch.Generator().manual_seed(0)
    s, b = sizes.train_size, sizes.train_batch
    batches_cpu = [(torch.randn(b, 3, s, s, generator=g), torch.randint(0, classes, (b,), generator=g))
                   for _ in range(sizes.train_steps)]  # fmt: skip
    torch.manual_seed(0)
    init = create_model(sizes.train_model, num_classes=classes).state_dict()
    reference_model = create_model(sizes.train_model, num_classes=classes)
    reference_model.load_state_dict(init)
    with torch.no_grad():
        want = reference_model.eval()(batches_cpu[0][0][:2])

    def fresh(channels_last: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
        m = create_model(sizes.train_model, num_classes=classes)
        m.load_state_dict(init)
        m = m.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        return m, torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    for precision in PRECISIONS:
        row = report.row(section, f"{sizes.train_model} {s}², {precision}"
                         f"{'' if precision == 'fp32' else ' + channels_last'}, batch {b}")  # fmt: skip
        why = supported(device, precision)
        if why is not None or report.time_left() < 0:
            row.note = why or "not measured: time budget"
            continue
        cl = precision != "fp32"
        fmt = torch.channels_last if cl else torch.contiguous_format
        batches = [(x.to(device, memory_format=fmt), y.to(device)) for x, y in batches_cpu]
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

        plain_model, plain_opt = fresh(cl)
        plain_scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

        def plain(model: nn.Module = plain_model, opt: torch.optim.Optimizer = plain_opt,
                  scaler: torch.amp.GradScaler = plain_scaler, batches: list = batches,
                  dtype: object = dtype) -> None:  # fmt: skip
            model.train()
            for x, y in batches:
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):  # type: ignore[arg-type]
                    loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()

        ours_model, ours_opt = fresh(cl)
        trainer = Trainer(ours_model, ours_opt, device=device, precision=precision, channels_last=cl,
                          num_classes=classes)  # fmt: skip
        n = len(batches) * b
        # Interleaved rounds: a busy machine slows both loops alike.
        plain_t, ours_t = [], []

        def ours(trainer: Trainer = trainer, batches: list = batches) -> None:
            trainer.train_one_epoch(batches, epoch=0)

        if sizes.warmup:
            plain()
            ours()
        for _ in range(sizes.rounds):
            plain_t.append(median_seconds(plain, device, 1, warmup=False))
            ours_t.append(median_seconds(ours, device, 1, warmup=False))
        ours_rate, plain_rate = n / statistics.median(ours_t), n / statistics.median(plain_t)
        check_model, _ = fresh(cl)
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):  # type: ignore[arg-type]
            got = check_model.eval()(batches_cpu[0][0][:2].to(device, memory_format=fmt))
        row.ours, row.reference = f"{ours_rate:.1f} img/s", f"{plain_rate:.1f} img/s"
        row.ratio, row.error = f"{ours_rate / plain_rate:.2f}×", max_abs_error(got, want) + " logits"
        row.note = "Trainer vs plain loop, same AMP/format, batches on the device"
        if device.type == "cuda":
            torch.cuda.empty_cache()


# -- determinism --------------------------------------------------------------------------------------------


def bench_determinism(report: Report, sizes: Sizes, device: torch.device) -> None:
    from texturebias.models import create_model
    from texturebias.train.loop import Trainer
    from texturebias.utils.device import deterministic_algorithms

    section, classes = "determinism", 1000
    g = torch.Generator().manual_seed(1)
    s, b = sizes.train_size, sizes.train_batch
    batches = [(torch.randn(b, 3, s, s, generator=g), torch.randint(0, classes, (b,), generator=g))
               for _ in range(max(2, sizes.train_steps // 2))]  # fmt: skip
    batches = [(x.to(device), y.to(device)) for x, y in batches]
    torch.manual_seed(0)
    init = create_model(sizes.train_model, num_classes=classes).state_dict()

    def weights_after_training() -> list[torch.Tensor]:
        model = create_model(sizes.train_model, num_classes=classes)
        model.load_state_dict(init)
        model = model.to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        Trainer(model, opt, device=device, precision="fp32", num_classes=classes).train_one_epoch(batches, epoch=0)
        return [p.detach().float().cpu() for p in model.parameters()]

    for kind in ("default", "deterministic"):
        row = report.row(section, f"{sizes.train_model} {s}², fp32, two seeded runs, {kind} kernels")
        if report.time_left() < 0:
            row.note = "not measured: time budget"
            continue
        with deterministic_algorithms(kind == "deterministic"):
            first, second = weights_after_training(), weights_after_training()
        diff = max((x - y).abs().max().item() for x, y in zip(first, second, strict=True))
        row.ours = "identical" if diff == 0 else "differ"
        row.error = f"{diff:.2e} largest weight difference between the runs"
        row.note = f"{len(batches)} SGD steps of batch {b}" + (
            "; cudnn.deterministic, cudnn.benchmark off, use_deterministic_algorithms(warn_only)"
            if kind == "deterministic" else f"; cudnn.benchmark {torch.backends.cudnn.benchmark}"
        )  # fmt: skip


# -- detection training ----------------------------------------------------------------------------------------


def bench_detect(report: Report, sizes: Sizes, device: torch.device, tmp: Path) -> None:
    import copy

    from texturebias.detect.data import VocDetectionDataset, collate
    from texturebias.detect.model import detection_model
    from texturebias.detect.synthetic import write_synthetic_voc
    from texturebias.detect.train import DetectTrainConfig, train_detector
    from texturebias.detect.voc import load_voc

    section = "detect"
    s, b, backbone = sizes.detect_size, sizes.detect_batch, sizes.detect_backbone
    voc = tmp / "voc"
    write_synthetic_voc(voc, splits={"trainval": sizes.detect_images, "test": 2}, size=(s, s))
    train_set = load_voc(voc, "2007-trainval")
    n_classes = len(train_set.classes) + 1
    anchors = (32, 64, 128, 256, 512) if backbone.startswith("resnet") else (16, 32, 64)
    kw = {"min_size": s, "max_size": s, "anchor_sizes": anchors}
    loader = torch.utils.data.DataLoader(VocDetectionDataset(train_set.images, train_set.classes), batch_size=b,
                                         shuffle=False, collate_fn=collate)  # fmt: skip
    torch.manual_seed(0)
    cpu_model = detection_model(backbone, num_classes=n_classes, **kw).eval()
    probe = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = next(iter(cpu_model.backbone(probe).values()))
    for precision in ("fp32", "fp16"):
        row = report.row(section, f"Faster R-CNN {backbone} {s}², {precision}, batch {b}")
        why = supported(device, precision)
        if why is not None or report.time_left() < 0:
            row.note = why or "not measured: time budget"
            continue
        amp = precision == "fp16"
        model = copy.deepcopy(cpu_model).to(device)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            got = next(iter(model.backbone(probe.to(device)).values()))
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                              weight_decay=1e-4)  # fmt: skip
        scaler = torch.amp.GradScaler(device.type, enabled=amp)

        def plain(model: nn.Module = model, opt: torch.optim.Optimizer = opt, scaler: torch.amp.GradScaler = scaler,
                  amp: bool = amp) -> None:  # fmt: skip
            model.train()
            for images, targets, _ in loader:
                images = [im.to(device, non_blocking=True) for im in images]
                targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
                with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                    loss = sum(model(images, targets).values())
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # type: ignore[union-attr]
                scaler.step(opt)
                scaler.update()

        runs = iter(range(10**6))  # a fresh output folder per run: train_detector would resume a finished one

        def ours(amp: bool = amp, tag: str = precision, runs: Iterator[int] = runs) -> float:
            config = DetectTrainConfig(
                backbone=backbone, voc_root=voc, out=tmp / f"detect-{tag}-{next(runs)}",
                train_sets=("2007-trainval",), epochs=1, batch_size=b, lr=0.01, warmup_iters=0, hflip=False,
                workers=0, amp=amp, device=device.type, log_every=0, **kw,
            )  # fmt: skip
            return float(train_detector(config).metrics[-1]["images_per_s"])

        if sizes.warmup:
            plain()
            ours()
        ours_rates, plain_rates = [], []
        for _ in range(sizes.rounds):  # interleaved: a busy machine slows both alike
            plain_rates.append(sizes.detect_images / median_seconds(plain, device, 1, warmup=False))
            ours_rates.append(ours())
        o, r = statistics.median(ours_rates), statistics.median(plain_rates)
        row.ours, row.reference, row.ratio = f"{o:.1f} img/s", f"{r:.1f} img/s", f"{o / r:.2f}×"
        row.error = max_abs_error(got, want) + " backbone features"
        row.note = "train_detector (its epoch timing) vs torchvision's reference loop, same loader and precision"
        if device.type == "cuda":
            torch.cuda.empty_cache()


# -- torchrun smoke runs -----------------------------------------------------------------------------------------


def ddp_probe(device_name: str) -> None:
    """Run under torchrun: a process group (NCCL on CUDA, gloo on CPU), an all-reduce, one DDP step."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    device = torch.device(device_name)
    backend = "nccl" if device.type == "cuda" else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    dist.init_process_group(backend=backend)
    try:
        t = torch.ones(4, device=device) * (dist.get_rank() + 1)
        dist.all_reduce(t)
        expected = dist.get_world_size() * (dist.get_world_size() + 1) / 2
        assert torch.allclose(t.cpu(), torch.full((4,), float(expected))), t
        net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
        model = DistributedDataParallel(net.to(device), device_ids=[device.index] if device.type == "cuda" else None)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss = F.cross_entropy(
            model(torch.randn(4, 3, 16, 16, device=device)), torch.tensor([0, 1, 0, 1], device=device)
        )
        loss.backward()
        opt.step()
        print(f"ddp probe ok: backend {backend}, world size {dist.get_world_size()}, loss {loss.item():.4f}")
    finally:
        dist.destroy_process_group()


def torchrun(args: list[str], timeout: float) -> tuple[bool, float, str]:
    """Run ``torchrun --standalone --nproc_per_node 1 <args>``; (ok, seconds, last output line)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", *args]
    env = {**os.environ, "TEXTUREBIAS_NO_PROGRESS": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO / "benchmarks"), env.get("PYTHONPATH", "")])
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - t0, f"timed out after {timeout:.0f} s"
    seconds = time.perf_counter() - t0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
    return proc.returncode == 0, seconds, (lines[-1] if lines else "")[:160]


def smoke_runs(report: Report, device: torch.device, vgg: Path, decoder: Path, tmp: Path, timeout: float) -> None:
    section = "smoke"
    content, styles = make_images(tmp / "smoke", 8, 2, 32)
    dev = device.type
    amp = ["--precision", "bf16", "--channels-last"] if dev == "cuda" else []
    jobs = {
        "torchrun --nproc_per_node 1 -m texturebias train": [
            "-m", "texturebias", "train", "--model", "resnet18", "--data", str(content), "--out", str(tmp / "train"),
            "--epochs", "1", "--batch-size", "4", "--workers", "0", "--input-size", "32", "--device", dev, *amp],
        "torchrun --nproc_per_node 1 -m texturebias stylize": [
            "-m", "texturebias", "stylize", str(content), str(styles), str(tmp / "stylized"), "--vgg", str(vgg),
            "--decoder", str(decoder), "--content-size", "32", "--crop", "32", "--style-size", "32",
            "--batch-size", "4", "--workers", "0", "--device", dev],
        "torchrun --nproc_per_node 1: process group + all_reduce + DDP step": [
            str(Path(__file__).resolve()), "--ddp-probe", "--device", str(device)],
    }  # fmt: skip
    if report.time_left() < 0:
        report.skip(section, "not measured: time budget")
        return
    # The three launches are independent: run them side by side (each is mostly interpreter start-up).
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = dict(zip(jobs, pool.map(lambda a: torchrun(a, timeout), jobs.values()), strict=True))
    for work, (ok, seconds, last) in results.items():
        row = report.row(section, work)
        row.ours = f"ok ({seconds:.1f} s)" if ok else f"FAILED ({seconds:.1f} s)"
        row.note = f"{'nccl' if dev == 'cuda' else 'gloo'} backend; " if "process group" in work else ""
        row.note += last.replace("|", "/")
        report.failed |= not ok


# -- the report ----------------------------------------------------------------------------------------------


def render(report: Report, args: argparse.Namespace, device: torch.device, seconds: float) -> str:
    """The generated Markdown block (machine, versions, command, table)."""
    machine = describe_machine()
    gpu_run = device.type == "cuda"
    lines = [BEGIN, "", "## Prepared GPU check (`benchmarks/gpu.py`)", ""]
    if gpu_run and not args.quick:
        lines.append(f"Measured on **{machine['gpu']}**; every row ran on this GPU unless its note says otherwise.")
    else:
        lines.append(
            f"**GPU rows: unmeasured.** This table comes from a `--device {device.type}"
            f"{' --quick' if args.quick else ''}` run: it shows the script works end to end; with `--quick` the "
            "sizes are tiny and the numbers say nothing about speed. Run `python benchmarks/gpu.py` on a GPU "
            "machine to fill it in."
        )
    lines += [
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in machine.items()],
        f"| cuDNN TF32 convolutions | {torch.backends.cudnn.allow_tf32 if gpu_run else 'n/a (CPU)'} |",
        f"| date | {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} |",
        f"| wall time | {seconds:.0f} s |",
        "",
        f"Command: `{args.command}`",
        "",
        'Ratios are ours / reference, both run in the same process on the same device; "max abs error" is '
        "against the CPU fp32 output of the same weights and inputs (stylization: raw decoder output, or uint8 "
        "pixels end to end; heatmaps: logits per pixel; training: logits of the initial weights).",
        "",
        "| section | work | ours | reference | ratio | max abs error vs CPU fp32 | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report.rows.values():
        lines.append(f"| {r.section} | {r.work} | {r.ours} | {r.reference} | {r.ratio} | {r.error} | {r.note} |")
    lines += ["", END]
    return "\n".join(lines)


def write_report(path: Path, block: str) -> None:
    """Replace the generated block of ``path`` (keeping the hand-written rest), or create the file."""
    if path.is_file():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            text = head + block + rest.split(END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = "# Performance\n\nMeasured numbers, each with the machine it was measured on.\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run (CPU: < 60 s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report to write (default docs/performance.md)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--budget-s", type=float, default=360.0, help="stop starting measurements after this")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--ddp-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ddp_probe:
        ddp_probe(args.device)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available here; use --device cpu (with --quick for a smoke run)")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    sizes = QUICK if args.quick else FULL
    report = Report(sizes, args.budget_s)
    print_machine()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        vgg, decoder = seeded_adain_weights(tmp)
        sections: list[tuple[str, Callable[[], None]]] = [
            ("stylize (in memory)", lambda: bench_stylize_in_memory(report, sizes, device, vgg, decoder)),
            ("stylize (end to end)", lambda: bench_stylize_end_to_end(report, sizes, device, vgg, decoder, tmp)),
            ("heatmap", lambda: bench_heatmap(report, sizes, device)),
            ("train", lambda: bench_train(report, sizes, device)),
            ("determinism", lambda: bench_determinism(report, sizes, device)),
            ("detect", lambda: bench_detect(report, sizes, device, tmp)),
            ("smoke", lambda: smoke_runs(report, device, vgg, decoder, tmp, 60.0 if args.quick else 120.0)),
        ]
        for section, run in sections:
            if report.time_left() < 0:
                report.skip(section, "not measured: time budget")
                continue
            t0 = time.perf_counter()
            try:
                run()
            except Exception as exc:  # one broken section must not hide the others
                report.fail(section, exc)
            print(f"{section}: {time.perf_counter() - t0:.1f} s", flush=True)
    seconds = time.perf_counter() - start
    block = render(report, args, device, seconds)
    write_report(args.out, block)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in report.rows.values()], indent=2) + "\n")
    print(block)
    print(f"wrote {args.out}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
