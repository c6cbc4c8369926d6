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

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from texturebias.errors import TextureBiasError
from texturebias.models.bagnet import BagNet, is_bagnet
from texturebias.utils.progress import progress

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
