"""Stylization on the fly as a batched training augmentation (the ``StyleAugment`` idea, Jackson et al. 2019).

Instead of a fixed Stylized-ImageNet on disk, each training batch is stylized on the device: with
probability ``p`` an image is replaced by its AdaIN stylization with a style drawn from a precomputed style
bank (statistics only, a few KB per style) or from another image of the same batch, with α drawn from a
range. One encoder pass and one decoder pass per batch; the style statistics of a bank are computed once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from texturebias.stylize.adain import AdaIN, StyleStats, mean_std
from texturebias.stylize.builder import load_style
from texturebias.utils.progress import progress


@torch.no_grad()
def style_bank(model: AdaIN, styles: torch.Tensor | Sequence[str | os.PathLike[str]], *, size: int = 224,
               batch_size: int = 32) -> StyleStats:  # fmt: skip
    """Precompute the :class:`StyleStats` of style images (a ``N×3×H×W`` tensor in [0, 1] / uint8, or files).

    Files are prepared as in the SIN recipe (centred square, Lanczos to ``size``), see
    :func:`texturebias.stylize.builder.load_style`.
    """

    chunks = []
    n = len(styles)
    for i in progress(range(0, n, batch_size), desc="style bank", unit="batch"):
        part = styles[i : i + batch_size]
        batch = part if isinstance(part, torch.Tensor) else torch.stack([load_style(p, size) for p in part])
        chunks.append(StyleStats(*mean_std(model.encode(batch))))
    return StyleStats.cat(chunks)


class StyleAugment(nn.Module):
    """Batched AdaIN stylization of a fraction of each training batch.

    Args:
        model: The stylizer (official or custom, see :mod:`texturebias.stylize.networks`); kept frozen.
        bank: Style statistics from :func:`style_bank`; ``None`` uses styles from the batch itself.
        p: Probability that an image is stylized.
        alpha: α, or a range ``(low, high)`` sampled uniformly per image.
        source: "bank", "batch" (another image of the batch, never itself when the batch has > 1 image),
            or "mixed" (each stylized image picks bank or batch with equal probability).
        clamp: Clamp the stylized images to [0, 1].

    Call it on ``N×3×H×W`` images in [0, 1] (before mean/std normalisation); returns a tensor of the same
    shape (decoder outputs of other sizes are resized back). Pass ``generator`` for reproducible draws.
    """

    def __init__(
        self,
        model: AdaIN,
        bank: StyleStats | None = None,
        *,
        p: float = 0.5,
        alpha: float | tuple[float, float] = (0.0, 1.0),
        source: str = "bank",
        clamp: bool = True,
    ) -> None:
        super().__init__()
        if source not in ("bank", "batch", "mixed"):
            raise ValueError(f"source must be 'bank', 'batch' or 'mixed', not {source!r}")
        if source != "batch" and bank is None:
            raise ValueError(f"source={source!r} needs a style bank (see style_bank())")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        lo, hi = (alpha, alpha) if isinstance(alpha, int | float) else alpha
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"alpha range must satisfy 0 <= low <= high <= 1, got {alpha}")
        self.model = model.eval()
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.bank = bank
        self.p = p
        self.alpha_range = (float(lo), float(hi))
        self.source = source
        self.clamp = clamp

    @torch.no_grad()
    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n = images.shape[0]
        dev = images.device
        chosen = (torch.rand(n, generator=generator) < self.p).nonzero().flatten()
        if len(chosen) == 0:
            return images
        lo, hi = self.alpha_range
        alphas = lo + (hi - lo) * torch.rand(len(chosen), generator=generator)
        feats = self.model.encode(images)
        c_mean, c_std = mean_std(feats)
        # Styles from the batch: image i takes the statistics of image perm[i] (a random derangement-like shift).
        shift = int(torch.randint(1, max(n, 2), (1,), generator=generator)) if n > 1 else 0
        from_batch = StyleStats(c_mean.roll(shift, 0)[chosen], c_std.roll(shift, 0)[chosen])
        if self.source == "batch":
            stats = from_batch
        else:
            assert self.bank is not None
            pick = torch.randint(len(self.bank), (len(chosen),), generator=generator)
            from_bank = self.bank[pick].to(feats.device)
            if self.source == "bank":
                stats = from_bank
            else:
                use_bank = (torch.rand(len(chosen), generator=generator) < 0.5).to(feats.device).view(-1, 1, 1, 1)
                stats = StyleStats(
                    torch.where(use_bank, from_bank.mean, from_batch.mean),
                    torch.where(use_bank, from_bank.std, from_batch.std),
                )
        t = self.model.stylize_features(feats[chosen], stats, alphas.to(feats.device))
        out = self.model.decode(t)
        if out.shape[-2:] != images.shape[-2:]:
            out = nn.functional.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False)
        if self.clamp:
            out = out.clamp(0, 1)
        result = images.clone()
        result[chosen.to(dev)] = out.to(images.dtype)
        return result
