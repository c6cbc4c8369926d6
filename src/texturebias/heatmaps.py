"""Exact class-evidence heatmaps of BagNets, their figures, and the most informative patches.

Definition (Brendel & Bethge, ICLR 2019, and the original code; REFERENCE §1): normalise the image,
zero-pad (q-1)//2 pixels on every side (zeros in normalised space, i.e. the mean colour), then
``heat[r, c]`` is the target-class logit of the q x q patch *centred* on pixel (r, c), model in eval mode.

The original code cuts out all H*W patches and runs each through the network (~10 TMAC for one 224x224
BagNet-33 map). Every conv of a BagNet has padding 0 and BN in eval mode is a fixed affine map, so the
same numbers come from ONE dense pass over the padded image with all strides set to 1 and every later
conv dilated by the stride accumulated so far ("a trous"; ~0.9 TMAC). :func:`class_evidence` does that,
folds each BN into its conv, multiplies the final features only with the target rows of ``fc``, batches
images, and tiles the output so memory stays bounded (tiles are exact: an output pixel depends only on
its own q x q input window).
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from texturebias.errors import TextureBiasError
from texturebias.models.bagnet import BagNet, is_bagnet

__all__ = [
    "class_evidence",
    "patch_loop_evidence",
    "DensePlan",
]

HeatPrecision = Literal["fp32", "bf16"]

# Default activation budget of one tile (bytes). 1.5 GB keeps a 1024x1024 BagNet-33 map well under 6 GB RSS
# while a 224x224 image still runs as a single tile (no recomputed borders).
DEFAULT_TILE_BYTES = 1536 * 2**20


@dataclass
class _Conv:
    """A conv with its BN folded in: ``y = conv(x, weight, dilation) + bias``."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    dilation: int

    @property
    def shrink(self) -> int:
        """Rows (and columns) the conv removes: (k - 1) * dilation, padding is 0."""
        return (self.weight.shape[-1] - 1) * self.dilation

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, dilation=self.dilation)


@dataclass
class _Block:
    conv1: _Conv
    conv2: _Conv
    conv3: _Conv
    downsample: _Conv | None


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, dilation: int) -> _Conv:
    w = conv.weight.detach().float()
    b = conv.bias.detach().float() if conv.bias is not None else None
    if bn is not None:
        # Eval-mode BN is the affine map y = gamma * (x - mean) / sqrt(var + eps) + beta.
        scale = bn.weight.detach().float() / torch.sqrt(bn.running_var.detach().float() + bn.eps)
        w = w * scale.view(-1, 1, 1, 1)
        shift = bn.bias.detach().float() - bn.running_mean.detach().float() * scale
        b = shift if b is None else b * scale + shift
    return _Conv(w.contiguous(), b, dilation)


class DensePlan:
    """A BagNet rewritten for dense ("a trous") evaluation: strides 1, dilations, BN folded into convs.

    Build once per model (or let :func:`class_evidence` do it) and reuse for many images.

    Args:
        model: A :class:`~texturebias.models.bagnet.BagNet` (weights are copied, the model is not changed).
        precision: "fp32" (exact up to float rounding) or "bf16" (CPU AMX / GPU; the last block and the
            ``fc`` rows stay in fp32, and so does the residual stream between blocks; see docs/bagnets.md).
        fp32_tail_blocks: With bf16, how many final blocks run in fp32 (default 1).
    """

    def __init__(self, model: nn.Module, precision: HeatPrecision = "fp32", fp32_tail_blocks: int = 1) -> None:
        if not is_bagnet(model):
            raise TextureBiasError(
                f"class evidence needs a BagNet (texturebias.models.bagnet.BagNet), got {type(model).__name__}: "
                "only bag-of-local-features models have exact per-patch logits"
            )
        if precision not in ("fp32", "bf16"):
            raise TextureBiasError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        net: BagNet = getattr(model, "module", model)
        self.receptive_field = net.receptive_field
        self.precision = precision
        p = next(net.parameters())
        self.device = p.device
        self.stem1 = _fold(net.conv1, None, 1)
        self.stem2 = _fold(net.conv2, net.bn1, 1)
        self.blocks: list[_Block] = []
        dil = 1
        for layer in net.layers():
            for i, blk in enumerate(layer):
                ds = blk.downsample
                self.blocks.append(
                    _Block(
                        conv1=_fold(blk.conv1, blk.bn1, dil),
                        conv2=_fold(blk.conv2, blk.bn2, dil),
                        conv3=_fold(blk.conv3, blk.bn3, dil),
                        downsample=_fold(ds[0], ds[1], dil) if ds is not None else None,
                    )
                )
                if i == 0:
                    # Strides become dilations of every later conv (a trous): the grid stays dense.
                    dil *= blk.stride
        self.fc_weight = net.fc.weight.detach().float()
        self.fc_bias = net.fc.bias.detach().float()
        self.num_classes = self.fc_weight.shape[0]
        self.channels_last = self.device.type == "cpu"
        n_fp32 = 0 if precision == "fp32" else max(0, min(fp32_tail_blocks, len(self.blocks)))
        self._first_fp32 = len(self.blocks) - n_fp32 if precision == "bf16" else 0
        if precision == "bf16":
            for conv in self._convs(self.blocks[: self._first_fp32]):
                conv.weight = conv.weight.to(torch.bfloat16)
                conv.bias = conv.bias.to(torch.bfloat16) if conv.bias is not None else None
            for conv in (self.stem1, self.stem2):
                conv.weight = conv.weight.to(torch.bfloat16)
                conv.bias = conv.bias.to(torch.bfloat16) if conv.bias is not None else None
        # Peak activation per output pixel (block input + conv branch + residual), for tile sizing.
        widest = max(b.conv1.weight.shape[1] + 2 * b.conv3.weight.shape[0] for b in self.blocks)
        self.bytes_per_pixel = 4 * widest
        if self.channels_last:
            for conv in self._all_convs():
                conv.weight = conv.weight.to(memory_format=torch.channels_last)

    @staticmethod
    def _convs(blocks: Iterable[_Block]) -> Iterable[_Conv]:
        for b in blocks:
            yield b.conv1
            yield b.conv2
            yield b.conv3
            if b.downsample is not None:
                yield b.downsample

    def _all_convs(self) -> Iterable[_Conv]:
        yield self.stem1
        yield self.stem2
        yield from self._convs(self.blocks)

    @torch.inference_mode()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Dense final features of a padded input: N x C x (H - q + 1) x (W - q + 1), float32."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        low = self.stem1.weight.dtype
        # In bf16 mode only the convs run in bf16; the residual stream between blocks stays fp32, because
        # rounding it to bf16 after every block is where most of the error of a plain bf16 pass comes from.
        x = F.relu_(self.stem2(self.stem1(x.to(low)))).float()
        for i, b in enumerate(self.blocks):
            xin = x.to(low) if i < self._first_fp32 else x
            out = F.relu_(b.conv1(xin))
            out = F.relu_(b.conv2(out))
            out = b.conv3(out).float()
            residual = x if b.downsample is None else b.downsample(xin)
            del x, xin
            # Top-left crop of the residual, as in the strided network (the crop is (k-1)*dilation now).
            h, w = out.shape[-2:]
            out += residual[..., :h, :w]
            del residual
            x = F.relu_(out)
        return x.float()

    def evidence(self, x_padded: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Target logits of every q x q window of a padded input.

        Args:
            x_padded: N x 3 x H x W (already zero-padded).
            rows: N x K class indices.

        Returns:
            N x K x (H - q + 1) x (W - q + 1), float32.
        """
        with torch.inference_mode():
            f = self.features(x_padded)
            n, c, h, w = f.shape
            wsel = self.fc_weight[rows]  # N x K x C: only the target rows of fc are ever multiplied
            flat = f.permute(0, 2, 3, 1).reshape(n, h * w, c)  # free view when f is channels_last
            heat = torch.bmm(flat, wsel.transpose(1, 2))  # N x HW x K
            heat = heat.permute(0, 2, 1).reshape(n, -1, h, w) + self.fc_bias[rows].unsqueeze(-1).unsqueeze(-1)
            return heat.contiguous()


def _normalise_targets(target: Any, n: int, num_classes: int) -> tuple[torch.Tensor, bool]:
    """Targets as an N x K long tensor, and whether the caller asked for a K axis."""
    if isinstance(target, torch.Tensor):
        t = target.detach().cpu().long()
        if t.ndim == 0:
            rows, multi = t.view(1, 1).expand(n, 1), False
        elif t.ndim == 1:
            if t.numel() != n:
                raise TextureBiasError(f"got {t.numel()} targets for {n} images")
            rows, multi = t.view(n, 1), False
        elif t.ndim == 2:
            if t.shape[0] != n:
                raise TextureBiasError(f"got targets for {t.shape[0]} images, expected {n}")
            rows, multi = t, True
        else:
            raise TextureBiasError("target must be an int, one int per image, or one list of ints per image")
    elif isinstance(target, (int, np.integer)):
        rows, multi = torch.full((n, 1), int(target), dtype=torch.long), False
    elif isinstance(target, Sequence):
        items = list(target)
        if len(items) != n:
            raise TextureBiasError(f"got {len(items)} targets for {n} images")
        if all(isinstance(t, (int, np.integer)) for t in items):
            rows, multi = torch.tensor([int(t) for t in items], dtype=torch.long).view(n, 1), False
        else:
            lists = [[int(v) for v in t] for t in items]
            if len({len(v) for v in lists}) != 1 or not lists[0]:
                raise TextureBiasError("every image needs the same (non-zero) number of target classes")
            rows, multi = torch.tensor(lists, dtype=torch.long), True
    else:
        raise TextureBiasError(f"unsupported target {target!r}")
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= num_classes):
        raise TextureBiasError(f"target class out of range 0..{num_classes - 1}")
    return rows.contiguous(), multi


def _tile_shape(h: int, w: int, n: int, q: int, budget_pixels: int) -> tuple[int, int]:
    """Output tile (th, tw): padded-tile area per image within budget, full-width strips when they fit."""
    per_image = max(1, budget_pixels // max(1, n))
    side = max(16, int(math.isqrt(per_image)) - (q - 1))
    if (h + q - 1) * (w + q - 1) <= per_image:
        return h, w
    # Full-width strips recompute fewer borders than squares while the strips stay tall compared to q.
    strip_h = per_image // (w + q - 1) - (q - 1)
    if strip_h >= 2 * q:
        th, tw = strip_h, w
    else:
        th, tw = min(h, side), min(w, side)
    # Equalise the tiles so the last one is not a sliver.
    th = math.ceil(h / math.ceil(h / th))
    tw = math.ceil(w / math.ceil(w / tw))
    return th, tw


def class_evidence(
    model: nn.Module | DensePlan,
    x: torch.Tensor,
    target: int | Sequence[int] | Sequence[Sequence[int]] | torch.Tensor,
    *,
    precision: HeatPrecision = "fp32",
    batch_size: int = 8,
    tile_bytes: int = DEFAULT_TILE_BYTES,
    window: tuple[int, int, int, int] | None = None,
    show_progress: bool = False,
) -> torch.Tensor:
    """Exact per-pixel class evidence of a BagNet (Brendel & Bethge 2019): the heatmap of the paper.

    ``heat[n, r, c]`` = logit of class ``target[n]`` for the q x q patch centred on pixel (r, c) of image n,
    after zero-padding (q-1)//2 pixels in normalised space; the model is evaluated in eval mode. Computed
    in one dense a-trous pass (no patch extraction), tiled so memory stays bounded; works for any H, W >= 1.

    Args:
        model: A BagNet, or a :class:`DensePlan` built from one (reuse it across calls to save the setup).
        x: Normalised images, N x 3 x H x W (or 3 x H x W).
        target: One class for all images (int), one per image (sequence / 1-D tensor), or K classes per
            image (sequence of sequences / N x K tensor; the result then has a K axis).
        precision: "fp32" (matches the patch-by-patch reference to float rounding) or "bf16" (much faster
            on CPUs with AMX and on GPUs; error vs fp32 documented in docs/bagnets.md).
        batch_size: Images per dense pass (further limited by ``tile_bytes``).
        tile_bytes: Activation budget of one pass; larger images are split into exact tiles.
        window: Only compute the map inside ``(top, left, height, width)`` (same values as the full map there).
        show_progress: Show a progress bar over tiles.

    Returns:
        float32 tensor N x H x W (N x K x H x W for several classes per image) on ``x``'s device; with
        ``window``, N x height x width.

    Raises:
        TextureBiasError: not a BagNet, bad target, bad input shape.
    """
    plan = model if isinstance(model, DensePlan) else DensePlan(model, precision)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != 3:
        raise TextureBiasError(f"expected normalised images N x 3 x H x W, got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    if n == 0 or h < 1 or w < 1:
        raise TextureBiasError(f"empty input of shape {tuple(x.shape)}")
    rows, multi = _normalise_targets(target, n, plan.num_classes)
    q = plan.receptive_field
    pad = (q - 1) // 2
    k = rows.shape[1]
    wy, wx, wh, ww = (0, 0, h, w) if window is None else (int(v) for v in window)
    if wh < 1 or ww < 1 or wy < 0 or wx < 0 or wy + wh > h or wx + ww > w:
        raise TextureBiasError(f"window {window} is not inside the {h}x{w} image")
    out = torch.empty((n, k, wh, ww), dtype=torch.float32, device=x.device)
    budget_pixels = max(1, tile_bytes // plan.bytes_per_pixel)
    # Batch several images per pass only when whole maps fit: splitting maps into smaller tiles to batch more
    # images would recompute more tile borders (each tile needs q - 1 extra input rows and columns).
    per_pass = max(1, min(batch_size, budget_pixels // ((wh + q - 1) * (ww + q - 1))))
    th, tw = _tile_shape(wh, ww, min(n, per_pass), q, budget_pixels)
    jobs = [
        (i0, r0, c0) for i0 in range(0, n, per_pass) for r0 in range(wy, wy + wh, th) for c0 in range(wx, wx + ww, tw)
    ]
    from texturebias.utils.progress import progress

    dev = plan.device
    for i0, r0, c0 in progress(jobs, desc="class evidence", unit="tile", disable=None if show_progress else True):
        i1, r1, c1 = min(n, i0 + per_pass), min(wy + wh, r0 + th), min(wx + ww, c0 + tw)
        # Padded-image rows r0 .. r1 + q - 2 hold every window centred on output rows r0 .. r1 - 1.
        # Cut the tile from the unpadded image and pad only where the tile touches the border.
        top, left = r0 - pad, c0 - pad
        bottom, right = r1 - 1 + (q - 1 - pad), c1 - 1 + (q - 1 - pad)
        src = x[i0:i1, :, max(0, top) : min(h, bottom + 1), max(0, left) : min(w, right + 1)]
        tile = F.pad(
            src.to(dev, torch.float32),
            (max(0, -left), max(0, right + 1 - w), max(0, -top), max(0, bottom + 1 - h)),
        )
        heat = plan.evidence(tile, rows[i0:i1].to(dev))
        out[i0:i1, :, r0 - wy : r1 - wy, c0 - wx : c1 - wx] = heat.to(out.device)
    return out if multi else out[:, 0]


@torch.inference_mode()
def patch_loop_evidence(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    *,
    batch_size: int = 1000,
    rows: Sequence[int] | None = None,
) -> torch.Tensor:
    """The reference definition, patch by patch (what the original code does): slow, for tests and benchmarks.

    Args:
        model: A BagNet (any model mapping q x q patches to logits works).
        x: One normalised image, 1 x 3 x H x W.
        target: Class index.
        batch_size: Patches per forward pass (the original uses 1000).
        rows: Only compute these output rows (the others are NaN); lets benchmarks time a subset.

    Returns:
        H x W float32 map.
    """
    net = getattr(model, "module", model)
    q = net.receptive_field
    pad = (q - 1) // 2
    _, _, h, w = x.shape
    xp = F.pad(x, (pad, q - 1 - pad, pad, q - 1 - pad))
    # unfold gives every q x q window with stride 1, in row-major order of its top-left corner.
    row_ids = list(range(h)) if rows is None else list(rows)
    heat = torch.full((h, w), float("nan"))
    coords = [(r, c) for r in row_ids for c in range(w)]
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(coords), batch_size):
            chunk = coords[s : s + batch_size]
            patches = torch.stack([xp[0, :, r : r + q, c : c + q] for r, c in chunk])
            logits = model(patches)[:, target].float()
            for (r, c), v in zip(chunk, logits.tolist(), strict=True):
                heat[r, c] = v
    finally:
        model.train(was_training)
    return heat


# ----------------------------------------------------------------------------------------------------------------
# Figures (paper convention: RdBu_r, symmetric limits at the 99th percentile of |heat|, image edges in grey)


def heat_limit(heat: np.ndarray | torch.Tensor, percentile: float = 99.0) -> float:
    """Symmetric colour limit: the ``percentile`` of |heat| (never 0, so a flat map still plots)."""
    a = np.abs(np.asarray(heat, dtype=np.float64))
    lim = float(np.percentile(a, percentile)) if a.size else 0.0
    return lim if lim > 0 else 1e-12


def image_edges(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Canny edges of an H x W x 3 image in [0, 1] as float with NaN off the edges (for a grey overlay)."""
    from skimage import feature

    grey = image.mean(axis=-1) if image.ndim == 3 else image
    edges = feature.canny(grey, sigma=sigma).astype(np.float64)
    edges[edges < 0.5] = np.nan
    return edges


def plot_heatmap(
    ax: Any,
    heat: np.ndarray | torch.Tensor,
    image: np.ndarray | None = None,
    *,
    percentile: float = 99.0,
    edge_alpha: float = 0.35,
) -> Any:
    """Draw one class-evidence map on a matplotlib axis as in Brendel & Bethge (2019), Fig. 3.

    Args:
        ax: Matplotlib axis.
        heat: H x W map.
        image: The image (H x W x 3 in [0, 1]) whose edges are overlaid in grey; ``None`` for no overlay.
        percentile: Colour limits are +-this percentile of |heat| (99, as in the paper).
        edge_alpha: Opacity of the edge overlay.

    Returns:
        The ``AxesImage`` of the heatmap (for a colorbar).
    """
    import matplotlib.pyplot as plt

    h = np.asarray(heat, dtype=np.float32)
    lim = heat_limit(h, percentile)
    im = ax.imshow(h, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="none")
    if image is not None and image.shape[:2] == h.shape:
        # Edges are 1 (dark in "Greys"; with alpha they read as grey), everything else NaN = transparent.
        greys = plt.get_cmap("Greys").with_extremes(bad=(0, 0, 0, 0))
        ax.imshow(image_edges(image), cmap=greys, alpha=edge_alpha, interpolation="none", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def heatmap_grid(
    stem: str | os.PathLike[str],
    images: Sequence[np.ndarray],
    heats: Sequence[Sequence[np.ndarray]],
    titles: Sequence[Sequence[str]],
    row_labels: Sequence[str] | None = None,
) -> list[Path]:
    """Grid figure: one row per image (the image, then one heatmap per class), PNG + PDF.

    Args:
        stem: Output path without extension.
        images: H x W x 3 images in [0, 1].
        heats: Per image, its maps (same H x W as the image).
        titles: Per image, one title per map.
        row_labels: Optional label for each row (e.g. the file name).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from texturebias.report.figures import save_figure

    cols = 1 + max((len(h) for h in heats), default=0)
    rows = len(images)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), squeeze=False)
    for r, (img, maps, names) in enumerate(zip(images, heats, titles, strict=True)):
        axes[r, 0].imshow(np.clip(img, 0, 1))
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
        if row_labels is not None:
            axes[r, 0].set_title(row_labels[r], fontsize=8)
        for c in range(1, cols):
            ax = axes[r, c]
            if c - 1 < len(maps):
                plot_heatmap(ax, maps[c - 1], img)
                ax.set_title(names[c - 1], fontsize=8)
            else:
                ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, stem, dpi=150)


def resolve_model(
    model: str | nn.Module, checkpoint: str | os.PathLike[str] | None, device: torch.device
) -> tuple[nn.Module, Any, str]:
    """(model in eval mode on ``device``, its Preprocessing, a display name) from a registry name or a module.

    A module is used as given, with ImageNet preprocessing; a name is built with its pretrained weights, or
    with ``checkpoint`` when given.
    """
    from texturebias.models import create_model
    from texturebias.preprocessing import Preprocessing, resolve_preprocessing

    if isinstance(model, nn.Module):
        return model.eval().to(device), Preprocessing(), type(model).__name__
    net = create_model(model, pretrained=checkpoint is None, checkpoint=checkpoint).to(device)
    return net, resolve_preprocessing(model), model


# ----------------------------------------------------------------------------------------------------------------
# Files in, maps and figures out (what `texturebias heatmap` runs)


@dataclass(frozen=True)
class HeatmapResult:
    """One saved map."""

    image: Path
    class_index: int
    class_name: str
    image_logit: float
    npy: Path
    figure: Path


def _slug(text: str) -> str:
    keep = "".join(ch if ch.isalnum() else "_" for ch in text.strip().lower())
    return "_".join(p for p in keep.split("_") if p) or "class"


def _class_names(num_classes: int) -> list[str]:
    if num_classes == 1000:
        from texturebias.data.imagenet import imagenet_categories

        return list(imagenet_categories())
    return [f"class_{i}" for i in range(num_classes)]


def heatmaps_for_images(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    model: str | nn.Module = "bagnet33",
    checkpoint: str | os.PathLike[str] | None = None,
    targets: Sequence[int] | None = None,
    top_k: int = 1,
    precision: HeatPrecision = "fp32",
    resize: Literal["always", "never", "auto"] = "always",
    device: str = "auto",
) -> list[HeatmapResult]:
    """Class-evidence maps of image files: ``<stem>_<class>.npy`` + figures, a grid figure and an index CSV.

    Args:
        paths: Image files.
        out_dir: Output folder (created).
        model: A registered BagNet's name, or a BagNet module (ImageNet preprocessing).
        checkpoint: Local weights instead of the declared pretrained ones.
        targets: Classes to explain (same for every image); ``None``: each image's ``top_k`` predicted classes.
        top_k: Predicted classes per image when ``targets`` is ``None``.
        precision: "fp32" or "bf16" (see :func:`class_evidence`).
        resize: Preprocessing: "always" (Resize 256 + CenterCrop 224, the paper's setting), "never" (the whole
            image at its own size), "auto".
        device: "auto", "cpu", "cuda", ...

    Returns:
        One :class:`HeatmapResult` per (image, class), in order. Also writes ``heatmaps.csv``, ``grid.png/pdf``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from texturebias.data.images import load_image
    from texturebias.report.figures import save_figure
    from texturebias.utils.device import resolve_device, strict_fp32
    from texturebias.utils.io import atomic_path, write_csv
    from texturebias.utils.progress import progress

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    model, prep, model_name = resolve_model(model, checkpoint, dev)
    if not is_bagnet(model):
        raise TextureBiasError(f"{model_name} is not a BagNet; heatmaps need bagnet9/17/33 or another BagNet")
    plan = DensePlan(model, precision)
    transform = prep.eval_transform(resize)
    names = _class_names(plan.num_classes)
    if targets is not None and any(not 0 <= t < plan.num_classes for t in targets):
        raise TextureBiasError(f"target class out of range 0..{plan.num_classes - 1}")
    results: list[HeatmapResult] = []
    grid_images, grid_heats, grid_titles, grid_rows = [], [], [], []
    used_stems: dict[str, int] = {}
    for path in progress([Path(p) for p in paths], desc="heatmaps", unit="img"):
        x = transform(load_image(path)).unsqueeze(0).to(dev)
        with strict_fp32(), torch.inference_mode():
            logits = model(x)[0].float().cpu() if min(x.shape[-2:]) >= plan.receptive_field else None
        if targets is not None:
            classes = list(targets)
        elif logits is not None:
            classes = logits.topk(min(top_k, plan.num_classes)).indices.tolist()
        else:
            raise TextureBiasError(f"{path}: smaller than the receptive field; give --target explicitly")
        with strict_fp32():
            heat = class_evidence(plan, x, [classes]).cpu()[0]
        stem = path.stem
        used_stems[stem] = used_stems.get(stem, 0) + 1
        if used_stems[stem] > 1:  # two files with the same name in different folders
            stem = f"{stem}-{used_stems[stem]}"
        image = prep.denormalize(x[0].cpu()).clamp(0, 1).permute(1, 2, 0).numpy()
        maps, titles = [], []
        for j, cls in enumerate(classes):
            name = f"{stem}_{_slug(names[cls])}"
            npy = out / f"{name}.npy"
            with atomic_path(npy) as tmp, open(tmp, "wb") as fh:
                np.save(fh, heat[j].numpy())
            fig, ax = plt.subplots(figsize=(4.2, 3.6))
            im = plot_heatmap(ax, heat[j].numpy(), image)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="logit")
            ax.set_title(f"{path.name}: {names[cls]} ({cls})", fontsize=8)
            fig_paths = save_figure(fig, out / name, dpi=150)
            logit = float(logits[cls]) if logits is not None else float("nan")
            results.append(HeatmapResult(path, cls, names[cls], logit, npy, fig_paths[0]))
            maps.append(heat[j].numpy())
            titles.append(f"{names[cls]} ({cls})")
        grid_images.append(image)
        grid_heats.append(maps)
        grid_titles.append(titles)
        grid_rows.append(path.name)
    write_csv(
        out / "heatmaps.csv",
        (
            {
                "image": str(r.image),
                "class_index": r.class_index,
                "class_name": r.class_name,
                "image_logit": f"{r.image_logit:.6g}",
                "npy": r.npy.name,
                "figure": r.figure.name,
            }
            for r in results
        ),
        ["image", "class_index", "class_name", "image_logit", "npy", "figure"],
    )
    if grid_images:
        heatmap_grid(out / "grid", grid_images, grid_heats, grid_titles, grid_rows)
    return results


# ----------------------------------------------------------------------------------------------------------------
# Most informative patches (Brendel & Bethge 2019, Fig. 2)


@dataclass(frozen=True)
class Patch:
    """One q x q window of a preprocessed image and its class logit."""

    logit: float
    image: Path
    image_label: int | None
    y: int
    x: int
    pixels: np.ndarray  # q x q x 3 uint8, as the model saw it (after preprocessing, denormalised)


@dataclass
class PatchSearchResult:
    """Output of :func:`informative_patches`: per class, the top-k patches from its own images and from all."""

    classes: list[int]
    own: dict[int, list[Patch]]
    all: dict[int, list[Patch]]
    n_images: int
    skipped: list[tuple[str, str]]
    files: list[Path]


class _TopK:
    """Bounded min-heap keeping the k largest items; ties go to the earlier image/position (deterministic)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[float, int, int, Any]] = []

    def would_accept(self, value: float) -> bool:
        return len(self._heap) < self.k or value > self._heap[0][0]

    def push(self, value: float, order: int, payload: Any) -> None:
        # Negative order: among equal logits the later item is "smaller", so it is the one dropped.
        item = (value, -order, id(payload), payload)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def sorted(self) -> list[Any]:
        return [it[3] for it in sorted(self._heap, key=lambda it: (-it[0], -it[1]))]


def _folder_labels(classes: Sequence[str]) -> dict[str, int | None]:
    """ImageFolder folder names (WordNet ids or indices) to ImageNet indices; unknown names map to None."""
    from texturebias.data.imagenet import class_index

    out: dict[str, int | None] = {}
    for name in classes:
        try:
            out[name] = class_index(name) if (name.startswith("n") and name[1:].isdigit()) or name.isdigit() else None
        except TextureBiasError:
            out[name] = None
    return out


def informative_patches(
    data_dir: str | os.PathLike[str],
    classes: Sequence[int],
    out_dir: str | os.PathLike[str],
    *,
    model: str | nn.Module = "bagnet33",
    checkpoint: str | os.PathLike[str] | None = None,
    k: int = 7,
    batch_size: int = 16,
    device: str = "auto",
    save_every: int = 50,
) -> PatchSearchResult:
    """Stream an ImageFolder and keep, per class, the k patches with the highest class logit.

    Each image is preprocessed like for evaluation (Resize 256 + CenterCrop 224); its patches are the q x q
    windows of the BagNet's stride-8 grid (exactly the windows the model classifies). Memory is bounded by
    per-class top-k heaps, whatever the folder size. Two rows per class as in the paper's Fig. 2: patches from
    images *of* that class (folder = the class's WordNet id or index) and patches from all images.

    Writes ``patches.csv`` (class_index, class_name, row, rank, image, image_label, y, x, size, logit),
    ``patches.png/pdf`` (montage) and ``skipped.csv`` (unreadable images with the reason).

    Resumable: every ``save_every`` batches the heaps are saved to ``patches.partial.pt`` in ``out_dir``;
    rerunning the same call after an interruption continues after the last saved image and gives the same
    result as an uninterrupted run. A saved state of other settings (model, checkpoint, classes, k, folder
    contents) is refused; the state file is removed when the results are written.

    Args:
        data_dir: ImageFolder root (sub-folders named by WordNet id ``n01440764`` or class index ``0``).
        classes: ImageNet class indices to search for.
        out_dir: Output folder.
        model: A registered BagNet's name, or a BagNet module (ImageNet preprocessing).
        checkpoint: Local weights instead of the declared pretrained ones.
        k: Patches per row.
        batch_size: Images per forward pass.
        device: "auto", "cpu", "cuda", ...
        save_every: Batches between two saves of the search state.

    Raises:
        TextureBiasError: not a BagNet, bad classes, unusable folder, a saved state of other settings.
    """
    from texturebias.data.images import index_image_folder, load_image
    from texturebias.utils.device import resolve_device, strict_fp32
    from texturebias.utils.io import save_torch, write_csv
    from texturebias.utils.progress import progress
    from texturebias.utils.seed import stable_hash

    if k < 1:
        raise TextureBiasError("k must be >= 1")
    if not classes:
        raise TextureBiasError("give at least one class")
    index = index_image_folder(data_dir, allow_empty_classes=True)
    labels = _folder_labels(index.classes)
    dev = resolve_device(device)
    model, prep, model_name = resolve_model(model, checkpoint, dev)
    if not is_bagnet(model):
        raise TextureBiasError(f"{model_name} is not a BagNet; informative patches need bagnet9/17/33")
    net: BagNet = getattr(model, "module", model)
    if any(not 0 <= c < net.num_classes for c in classes):
        raise TextureBiasError(f"class out of range 0..{net.num_classes - 1}")
    classes = list(dict.fromkeys(int(c) for c in classes))
    q, stride = net.receptive_field, net.total_stride
    transform = prep.eval_transform("always")
    w_sel = net.fc.weight.detach()[classes]
    b_sel = net.fc.bias.detach()[classes]
    own = {c: _TopK(k) for c in classes}
    every = {c: _TopK(k) for c in classes}
    skipped: list[tuple[str, str]] = []
    samples = list(index.samples)
    n_done = 0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / _PATCH_STATE
    identity = {
        "model": model_name,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "data": str(Path(data_dir).resolve()),
        "files": stable_hash(*(str(p) for p, _ in samples)),
        "classes": classes,
        "k": k,
    }
    start = 0
    if state_path.exists():
        state = _load_patch_state(state_path, identity)
        start, n_done, skipped = state["next"], state["n_done"], [tuple(x) for x in state["skipped"]]
        for c in classes:
            _restore_topk(own[c], state["own"][str(c)])
            _restore_topk(every[c], state["every"][str(c)])

    def flush(batch: list[tuple[int, Path, int | None, torch.Tensor]]) -> None:
        x = torch.stack([b[3] for b in batch]).to(dev)
        with strict_fp32(), torch.inference_mode():
            f = net.forward_features(x)
            logits = (torch.einsum("nchw,kc->nkhw", f, w_sel) + b_sel.view(1, -1, 1, 1)).float().cpu()
        gw = logits.shape[-1]
        for i, (order, path, label, xi) in enumerate(batch):
            image = None
            for j, c in enumerate(classes):
                vals, pos = logits[i, j].flatten().topk(min(k, logits[i, j].numel()))
                for v, p in zip(vals.tolist(), pos.tolist(), strict=True):
                    heaps = [every[c]] + ([own[c]] if label == c else [])
                    heaps = [h for h in heaps if h.would_accept(v)]
                    if not heaps:
                        break  # values are sorted: nothing further from this image fits
                    if image is None:
                        image = (prep.denormalize(xi).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
                    y, xx = (p // gw) * stride, (p % gw) * stride
                    patch = Patch(v, path, label, y, xx, image[y : y + q, xx : xx + q].copy())
                    for h in heaps:
                        h.push(v, order * 1_000_000 + p, patch)

    def save(next_order: int) -> None:
        save_torch(state_path, {
            "identity": identity, "next": next_order, "n_done": n_done, "skipped": [list(x) for x in skipped],
            "own": {str(c): _topk_state(own[c]) for c in classes},
            "every": {str(c): _topk_state(every[c]) for c in classes},
        })  # fmt: skip

    batch: list[tuple[int, Path, int | None, torch.Tensor]] = []
    n_flushed = 0
    with progress(total=len(samples), desc="patches", unit="img") as bar:
        bar.update(start)
        for order in range(start, len(samples)):
            path, folder_idx = samples[order]
            bar.update(1)
            try:
                xi = transform(load_image(path))
            except (TextureBiasError, OSError, ValueError) as exc:
                skipped.append((str(path), str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
                continue
            batch.append((order, path, labels[index.classes[folder_idx]], xi))
            if len(batch) == batch_size:
                flush(batch)
                n_done += len(batch)
                batch = []
                n_flushed += 1
                if n_flushed % save_every == 0:
                    save(order + 1)
        if batch:
            flush(batch)
            n_done += len(batch)

    names = _class_names(net.num_classes)
    result = PatchSearchResult(
        classes=classes,
        own={c: own[c].sorted() for c in classes},
        all={c: every[c].sorted() for c in classes},
        n_images=n_done,
        skipped=skipped,
        files=[],
    )
    rows = []
    for c in classes:
        for row_name, items in (("own", result.own[c]), ("all", result.all[c])):
            for rank, pt in enumerate(items, 1):
                rows.append(
                    {
                        "class_index": c,
                        "class_name": names[c],
                        "row": row_name,
                        "rank": rank,
                        "image": str(pt.image),
                        "image_label": "" if pt.image_label is None else pt.image_label,
                        "y": pt.y,
                        "x": pt.x,
                        "size": q,
                        "logit": f"{pt.logit:.6g}",
                    }
                )
    fields = ["class_index", "class_name", "row", "rank", "image", "image_label", "y", "x", "size", "logit"]
    result.files.append(write_csv(out / "patches.csv", rows, fields))
    result.files.append(
        write_csv(out / "skipped.csv", ({"image": p, "reason": r} for p, r in skipped), ["image", "reason"])
    )
    result.files.extend(patch_montage(out / "patches", result, names, k))
    state_path.unlink(missing_ok=True)
    return result


_PATCH_STATE = "patches.partial.pt"


def _topk_state(heap: _TopK) -> list[dict[str, Any]]:
    """A heap's items as plain data (``torch.load(weights_only=True)`` reads it back)."""
    return [
        {"order": -neg_order, "logit": p.logit, "image": str(p.image),
         "label": -1 if p.image_label is None else p.image_label, "y": p.y, "x": p.x,
         "pixels": torch.from_numpy(p.pixels)}
        for _, neg_order, _, p in heap._heap
    ]  # fmt: skip


def _restore_topk(heap: _TopK, items: list[dict[str, Any]]) -> None:
    for it in items:
        label = None if it["label"] < 0 else int(it["label"])
        patch = Patch(float(it["logit"]), Path(it["image"]), label, int(it["y"]), int(it["x"]), it["pixels"].numpy())
        heap.push(patch.logit, int(it["order"]), patch)


def _load_patch_state(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    from texturebias.utils.io import require_same_settings

    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise TextureBiasError(f"{path}: unreadable saved search state ({exc}); delete it to start over") from None
    saved = state.get("identity") if isinstance(state, dict) else None
    require_same_settings(saved, identity, what="patch search", state_file=path)
    return state


def patch_montage(stem: str | os.PathLike[str], result: PatchSearchResult, names: Sequence[str], k: int) -> list[Path]:
    """Montage of :func:`informative_patches` results: two rows per class (own images, all images), PNG + PDF."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from texturebias.report.figures import save_figure

    grid = []
    for c in result.classes:
        grid.append((f"{names[c]}\n(images of the class)", result.own[c]))
        grid.append((f"{names[c]}\n(all images)", result.all[c]))
    fig, axes = plt.subplots(len(grid), k, figsize=(1.3 * k + 1.2, 1.45 * len(grid)), squeeze=False)
    for r, (label, items) in enumerate(grid):
        for col in range(k):
            ax = axes[r, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(items):
                ax.imshow(items[col].pixels, interpolation="nearest")
                ax.set_title(f"{items[col].logit:.2f}", fontsize=7)
            elif col == 0:  # keep the row label visible and say why the row is empty
                ax.set_frame_on(False)
                ax.text(0.0, 0.5, "no images", fontsize=7, transform=ax.transAxes, va="center")
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return save_figure(fig, stem, dpi=150)
