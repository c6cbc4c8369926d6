"""The Stylized-ImageNet builder: AdaIN-stylize every image of a folder tree (REFERENCE §2, SIN recipe).

:func:`stylize_folder` runs on the generic job machinery of :mod:`texturebias.data.folder_job` (sorted
inputs, seeded per item, manifest/failed.csv, kill-safe resume, rank sharding, loader workers). On top:

- Styles are listed once (sorted, case-insensitive extensions), checked from their headers (readable, both
  sides ≥ ``style_size`` as the SIN recipe drops smaller paintings) and recorded in ``OUT/styles.csv``; the
  style of output ``k`` of a content image is ``styles[rng(seed, "style", content relpath, k)]``, uniform
  with replacement, so it never depends on batch size, workers, ranks or interruptions. A style that turns
  out unreadable when decoded is replaced by the next deterministic draw (recorded in the manifest).
- Style statistics at relu4_1 are computed once per style and cached for the whole run (a few KB each).
- Content images are decoded, resized and cropped in DataLoader workers, as uint8; stylization runs in
  batches on the device, optionally in bf16 and channels_last; PNG encoding runs in writer threads.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from texturebias.data.folder_job import FolderJobSummary, ItemResult, JobItem, run_folder_job
from texturebias.data.images import find_images, load_image
from texturebias.data.job_records import check_job_settings
from texturebias.errors import DataError, ImageReadError, TextureBiasError
from texturebias.stylize.adain import AdaIN, StyleStats, mean_std, preserve_color
from texturebias.utils.device import (
    Precision,
    cpu_micro_batch,
    forward_in_chunks,
    resolve_device,
    resolve_precision,
    run_batch_of_two,
)
from texturebias.utils.distributed import DistInfo, dist_info, init_distributed
from texturebias.utils.io import folder_identity, module_digest, write_csv
from texturebias.utils.progress import get_logger, progress

STYLES_NAME = "styles.csv"
SETTINGS_NAME = "stylize.json"
MAX_STYLE_DRAWS = 10  # redraws when a chosen style cannot be decoded


@dataclass(frozen=True)
class StyleBank:
    """The usable style images (sorted) and those that were dropped, with the reason."""

    root: Path
    paths: tuple[Path, ...]
    dropped: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.paths)

    def relpath(self, index: int) -> str:
        return self.paths[index].relative_to(self.root).as_posix()


def _header_check(path: Path, min_size: int) -> str | None:
    """Reason to drop a style image judged from its header only (fast), or None."""
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        with Image.open(path) as img:
            w, h = img.size
    except Exception:
        return "not a readable image file"
    if min(w, h) < min_size:
        return f"smaller than {min_size} px ({w}x{h})"
    return None


def list_styles(style_dir: str | os.PathLike[str], *, min_size: int = 224, show_progress: bool = True) -> StyleBank:
    """Sorted usable style images of ``style_dir`` (the SIN recipe drops unreadable and too-small ones).

    Raises:
        DataError: the folder is missing or holds no usable style image.
    """
    root = Path(style_dir)
    found = find_images(root)
    keep: list[Path] = []
    dropped: list[tuple[str, str]] = []
    for p in progress(found, desc="checking styles", unit="img", disable=None if show_progress else True):
        reason = _header_check(p, min_size)
        if reason is None:
            keep.append(p)
        else:
            dropped.append((p.relative_to(root).as_posix(), reason))
    if not keep:
        raise DataError(f"{root}: no usable style images ({len(found)} found, {len(dropped)} dropped)")
    return StyleBank(root, tuple(keep), tuple(dropped))


def load_style(path: str | os.PathLike[str], size: int = 224) -> torch.Tensor:
    """A style image as the SIN recipe prepares it: RGB, largest centred square, Lanczos-resized to ``size``.

    Returns:
        ``3×size×size`` uint8 tensor.
    """
    img = load_image(path)
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.LANCZOS)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


def load_content(path: str | os.PathLike[str], content_size: int | None = 256, crop: int | None = 224) -> torch.Tensor:
    """A content image as the SIN recipe prepares it: RGB → Resize(shorter side, bilinear) → CenterCrop.

    ``content_size``/``crop`` of ``None`` or 0 skip that step. Returns a ``3×H×W`` uint8 tensor.
    """
    img = load_image(path)
    if content_size:
        img = TF.resize(img, content_size, interpolation=TF.InterpolationMode.BILINEAR)
    if crop:
        if min(img.size) < crop:
            raise ImageReadError(f"{path}: smaller than the {crop} px crop ({img.width}x{img.height})")
        img = TF.center_crop(img, crop)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


def pick_style(item: JobItem, k: int, n_styles: int, attempt: int = 0) -> int:
    """Index of the style for output ``k`` of ``item``: uniform with replacement, a pure function of the seed."""
    return int(item.rng("style", k, attempt).integers(n_styles))


@dataclass
class _ItemLoader:
    """Runs in DataLoader workers: the content crop and its chosen style images (picklable)."""

    bank: StyleBank
    styles_per_image: int
    content_size: int | None
    crop: int | None
    style_size: int
    # Shared-memory flags set by the main process once a style's statistics are cached: workers then skip
    # decoding that painting (a large JPEG costs more than the content image). Read races only cost a
    # redundant decode; a set flag is never cleared, so a skipped style is always in the cache.
    cached: torch.Tensor | None = None

    def __call__(self, item: JobItem) -> dict[str, Any]:
        content = load_content(item.path, self.content_size, self.crop)
        styles = []
        for k in range(self.styles_per_image):
            problems = []
            for attempt in range(MAX_STYLE_DRAWS):
                idx = pick_style(item, k, len(self.bank), attempt)
                if self.cached is not None and bool(self.cached[idx]):
                    styles.append((idx, None, problems))
                    break
                try:
                    styles.append((idx, load_style(self.bank.paths[idx], self.style_size), problems))
                    break
                except ImageReadError as exc:
                    problems.append(f"{self.bank.relpath(idx)}: {exc}")
            else:
                raise ImageReadError(f"no readable style after {MAX_STYLE_DRAWS} draws: {'; '.join(problems)}")
        return {"content": content, "styles": styles}


@dataclass
class _Stylizer:
    """The per-batch callback: cached style statistics, batched AdaIN, uint8 outputs."""

    model: AdaIN
    bank: StyleBank
    alpha: float
    styles_per_image: int
    preserve_color: bool = False
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    style_batch: int = 32
    cached_flags: torch.Tensor | None = None
    micro_batch: int | None = 0  # images per network call (0: the whole batch; None: cpu_micro_batch)

    def _micro(self, x: torch.Tensor) -> int:
        if self.micro_batch is not None:
            return self.micro_batch
        return cpu_micro_batch(x.shape[-2], x.shape[-1])

    def _stats(self, pairs: list[tuple[int, torch.Tensor | None]]) -> StyleStats:
        missing: dict[int, torch.Tensor] = {}
        for idx, img in pairs:
            if idx not in self.cache and img is not None:
                missing.setdefault(idx, img)
        todo = sorted(missing)
        # Styles of equal size are encoded together; the statistics of one style do not depend on its batch.
        for i in range(0, len(todo), self.style_batch):
            chunk = todo[i : i + self.style_batch]
            by_shape: dict[tuple[int, ...], list[int]] = {}
            for idx in chunk:
                by_shape.setdefault(tuple(missing[idx].shape), []).append(idx)
            for idxs in by_shape.values():
                stats = StyleStats(
                    *mean_std(run_batch_of_two(self.model.encode, torch.stack([missing[j] for j in idxs])))
                )
                for j, idx in enumerate(idxs):
                    self.cache[idx] = (stats.mean[j : j + 1], stats.std[j : j + 1])
                    if self.cached_flags is not None:
                        self.cached_flags[idx] = True
        return StyleStats(
            torch.cat([self.cache[idx][0] for idx, _ in pairs]), torch.cat([self.cache[idx][1] for idx, _ in pairs])
        )

    @torch.no_grad()
    def __call__(self, items: list[JobItem], loaded: list[dict[str, Any]]) -> list[ItemResult]:
        results: list[ItemResult | None] = [None] * len(items)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, data in enumerate(loaded):
            by_shape.setdefault(tuple(data["content"].shape), []).append(i)
        for idxs in by_shape.values():
            content = torch.stack([loaded[i]["content"] for i in idxs])
            content_feat = forward_in_chunks(self.model.encode, content, self._micro(content))
            outs = []
            for k in range(self.styles_per_image):
                pairs = [loaded[i]["styles"][k][:2] for i in idxs]
                if self.preserve_color:
                    styles = torch.stack([p[1] for p in pairs]).to(self.model.device).float() / 255
                    styles = preserve_color(styles, content.to(self.model.device).float() / 255)
                    # unclamped, as the reference
                    stats = StyleStats(*mean_std(run_batch_of_two(self.model.encode, styles)))
                else:
                    stats = self._stats(pairs)
                t = self.model.stylize_features(content_feat, stats, self.alpha)
                out = forward_in_chunks(self.model.decode, t, self._micro(content))
                # torchvision save_image rounding, done here on the whole batch (cheap) rather than per image.
                outs.append(out.clamp(0, 1).mul(255).add(0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
            for j, i in enumerate(idxs):
                names = [""] if self.styles_per_image == 1 else [f"s{k}" for k in range(self.styles_per_image)]
                styles = loaded[i]["styles"]
                results[i] = ItemResult(
                    outputs={name: outs[k][j] for k, name in enumerate(names)},
                    info={
                        "style": {name: self.bank.relpath(styles[k][0]) for k, name in enumerate(names)},
                        "style_index": {name: styles[k][0] for k, name in enumerate(names)},
                        "alpha": self.alpha,
                        "note": {name: "; ".join(styles[k][2]) for k, name in enumerate(names)},
                    },
                )
        return [r for r in results if r is not None]


def _layout(name: str, stem: str, ext: str) -> str:
    # One tree mirroring the content tree; several styles per image get a suffix: <stem>_s0.png, <stem>_s1.png.
    return f"{stem}.{ext}" if name == "" else f"{stem}_{name}.{ext}"


def stylize_folder(
    content_dir: str | os.PathLike[str],
    style_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    alpha: float = 1.0,
    content_size: int | None = 256,
    crop: int | None = 224,
    style_size: int = 224,
    min_style_size: int | None = None,
    styles_per_image: int = 1,
    seed: int = 0,
    image_format: str = "png",
    quality: int = 95,
    batch_size: int = 16,
    workers: int | None = None,
    precision: Precision | Literal["auto"] = "fp32",
    channels_last: bool | None = None,
    preserve_colors: bool = False,
    vgg: str | os.PathLike[str] | None = None,
    decoder: str | os.PathLike[str] | None = None,
    model: AdaIN | None = None,
    device: str | torch.device = "auto",
    shard_size: int | None = None,
    png_compress_level: int = 6,
    limit: int | None = None,
    dist: DistInfo | None = None,
    micro_batch: int | None = None,
) -> FolderJobSummary:
    """Build a stylized copy of ``content_dir`` (defaults: the Stylized-ImageNet recipe, REFERENCE §2).

    Args:
        content_dir: Content images (an ImageFolder tree or any tree; mirrored in ``out_dir``).
        style_dir: Style images (paintings), searched recursively.
        out_dir: Output tree + ``manifest.csv`` (input, output_name, output, status, style, style_index,
            alpha, note), ``failed.csv``, ``styles.csv`` (the style list with dropped styles and why),
            ``stylize.json`` (the settings; a rerun with other settings is refused).
        alpha: Style strength in [0, 1] (SIN: 1.0).
        content_size: Resize the shorter side to this (SIN: 256; 0/None: keep).
        crop: Centre crop (SIN: 224; 0/None: none — then sizes may vary and batches group equal sizes).
        style_size: Styles: largest centred square resized to this (SIN: 224, Lanczos).
        min_style_size: Drop styles with a side below this (default: ``style_size``, as SIN).
        styles_per_image: Stylizations per content image (outputs ``<stem>_s0.png`` … when > 1).
        seed: Seed of the content → style assignment.
        image_format: "png" (SIN), "jpg" or "webp".
        quality: JPEG/WebP quality.
        batch_size: Content images per batch on the device.
        workers: DataLoader worker processes decoding and resizing inputs (``None``: 0 on a CPU, where the
            convolutions already use every core and a decoding process only slows them down — measured 2.16x the
            reference loop with 0 workers vs 1.38x with 1 on 2 cores, docs/performance.md — and 2 on a GPU).
        precision: "fp32" (default), "bf16" (CPU AMX / GPU) or "fp16" (GPU); see docs/stylize.md for the errors.
            "auto": bf16 on CUDA and on CPUs with AVX512-BF16/AMX, fp32 elsewhere (the recorded settings hold
            the resolved value).
        channels_last: Memory format (default: on for bf16/fp16 and on CUDA).
        preserve_colors: Recolour each style to its content's colours first (statistics then not cached).
        vgg: ``vgg_normalised.pth`` (default: the declared download).
        decoder: ``decoder.pth`` or a ``train-decoder`` checkpoint (default: the declared download).
        model: A ready :class:`AdaIN` (custom networks); overrides ``vgg``/``decoder``/precision settings.
        device: "auto", "cpu", "cuda" …; under torchrun on CUDA each rank uses ``cuda:<local_rank>``.
        shard_size: Write WebDataset-style tar shards of this many images instead of a file tree.
        png_compress_level: zlib level for PNG output (6 default; 1 is faster, files ~10% larger).
        limit: Only the first ``limit`` content images (trials).
        micro_batch: Images per network call within a batch (``None``: on a CPU as many as keep a call's
            full-resolution activations within ~32 MB, i.e. 2 at 224² and the whole batch for small images; on a
            GPU the whole batch; 0: the whole batch). On a CPU small calls keep the activations in cache (1.3x
            faster per image at 224² than batch 8, measured); the outputs are bit-identical for every value.
        dist: Rank and world size (default: from ``torchrun``'s environment, initialising the process group).

    Returns:
        The job summary (``.describe()`` lists skipped files).
    """
    if not 0.0 <= alpha <= 1.0:
        raise TextureBiasError(f"alpha must be in [0, 1], got {alpha}")
    if styles_per_image < 1:
        raise TextureBiasError("styles_per_image must be >= 1")
    for folder in (content_dir, style_dir):  # fail fast, before loading (or downloading) any weights
        if not Path(folder).is_dir():
            raise DataError(f"folder not found: {folder}")
    if Path(out_dir).resolve() in (Path(content_dir).resolve(), Path(style_dir).resolve()):
        raise DataError("the output folder must differ from the content and style folders")
    info = dist if dist is not None else (init_distributed() if dist_info().distributed else dist_info())
    dev = resolve_device(device)
    if dev.type == "cuda" and info.distributed and dev.index is None:
        dev = torch.device("cuda", info.local_rank)
    precision = resolve_precision(precision, dev)
    if model is None:
        cl = channels_last if channels_last is not None else (precision != "fp32" or dev.type == "cuda")
        model = AdaIN.from_checkpoints(vgg, decoder, device=dev, precision=precision, channels_last=cl)
    model = model.to(dev).eval()
    out = Path(out_dir)
    settings = {
        "alpha": alpha,
        "content_size": content_size or None,
        "crop": crop or None,
        "style_size": style_size,
        "min_style_size": min_style_size if min_style_size is not None else style_size,
        "styles_per_image": styles_per_image,
        "seed": seed,
        "format": image_format,
        "quality": quality if image_format != "png" else None,
        "preserve_colors": preserve_colors,
        "shard_size": shard_size,
        # The networks and the numeric precision change the pixels too (the weights by content, however loaded).
        "networks_sha256": module_digest(model),
        "precision": getattr(model, "precision", precision),
        "style_files": folder_identity(style_dir),
    }
    bank = list_styles(style_dir, min_size=min_style_size if min_style_size is not None else style_size)
    # The assignment content -> style is by index into the style list: the list must not change on resume.
    settings["styles"] = len(bank)
    settings["styles_sha256"] = hashlib.sha256("\n".join(map(bank.relpath, range(len(bank)))).encode()).hexdigest()
    check_job_settings(out, settings, what="stylize job", filename=SETTINGS_NAME, write=info.is_main)
    if info.is_main:
        rows = [{"index": i, "style": bank.relpath(i), "status": "used", "reason": ""} for i in range(len(bank))]
        rows += [{"index": "", "style": rel, "status": "dropped", "reason": why} for rel, why in bank.dropped]
        write_csv(out / STYLES_NAME, rows, ["index", "style", "status", "reason"])
    # Colour preservation recolours each style per content image: it needs the pixels every time.
    flags = None if preserve_colors else torch.zeros(len(bank), dtype=torch.bool).share_memory_()
    loader = _ItemLoader(bank, styles_per_image, content_size or None, crop or None, style_size, flags)
    if micro_batch is None and dev.type != "cpu":
        micro_batch = 0
    if workers is None:
        workers = 0 if dev.type == "cpu" else 2
    if micro_batch is not None and micro_batch < 0:
        raise TextureBiasError("micro_batch must be >= 0")
    stylizer = _Stylizer(
        model, bank, alpha, styles_per_image, preserve_colors, cached_flags=flags, micro_batch=micro_batch
    )
    summary = run_folder_job(
        content_dir,
        out,
        stylizer,
        load_item=loader,
        seed=seed,
        batch_size=batch_size,
        workers=workers,
        image_format=image_format,
        quality=quality,
        png_compress_level=png_compress_level,
        layout=_layout,
        manifest_fields=["style", "style_index", "alpha", "note"],
        shard_size=shard_size,
        dist=info,
        desc="stylize",
        limit=limit,
    )
    if bank.dropped and info.is_main:
        get_logger("stylize").info(f"{len(bank.dropped)} style image(s) dropped (see {out / STYLES_NAME})")
    return summary
